//! Authentication: the [`AuthUser`] extractor turns `Authorization: Bearer ci_...` into the
//! caller, or answers 401 with a message that says which part to fix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use ci_common::db::api_keys::{self, KeyState};
use ci_common::keys::{KeyShape, SecretKey};
use ci_common::{ApiKeyId, UserId};

use crate::error::ApiError;
use crate::AppState;

/// How often one replica writes a key's `last_used_at` (the query is rate-limited as well).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user_id: UserId,
    pub key_id: ApiKeyId,
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        code,
        message: message.into(),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(unauthorized(
                "missing_api_key",
                "no API key: send it as the header `Authorization: Bearer ci_...` \
                 (an administrator creates keys with `ci-admin`)",
            ));
        };
        let text = header.to_str().unwrap_or_default().trim();
        let Some(key) = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
        else {
            return Err(unauthorized(
                "malformed_authorization",
                "the Authorization header must be `Bearer <API key>`, e.g. `Authorization: Bearer ci_...`",
            ));
        };
        let secret = SecretKey::parse(key).map_err(|problem| {
            unauthorized(
                "mistyped_api_key",
                format!("the API key is mistyped: {problem}; copy the whole key again"),
            )
        })?;
        let Some((key, user)) = api_keys::find_by_secret(&state.pool, &secret).await? else {
            let message = match secret.shape() {
                // A key of ours with a typo has this shape too: say so.
                KeyShape::Prototype => {
                    "this API key is not known here: it is not a key issued by ci (its checksum \
                     does not match: is it mistyped or cut short?) nor an imported one; copy the \
                     whole key again or ask an administrator for a new key"
                }
                KeyShape::Current | KeyShape::Short => {
                    "this API key is not known here: it may belong to another server or have \
                     been deleted; ask an administrator for a new key"
                }
            };
            return Err(unauthorized("unknown_api_key", message));
        };
        let now = Utc::now();
        match key.state(now) {
            KeyState::Active => {}
            KeyState::Revoked => {
                return Err(unauthorized(
                    "revoked_api_key",
                    format!(
                        "this API key ({}) was revoked; use another key or ask an administrator for a new one",
                        key.label()
                    ),
                ))
            }
            KeyState::Expired => {
                return Err(unauthorized(
                    "expired_api_key",
                    format!(
                        "this API key ({}) expired on {}; ask an administrator for a new one",
                        key.label(),
                        key.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ),
                ))
            }
        }
        if !user.active {
            return Err(unauthorized(
                "inactive_user",
                "the account this API key belongs to is deactivated; ask an administrator to reactivate it",
            ));
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        if state.touches.due(key.id) {
            let pool = state.pool.clone();
            let key_id = key.id;
            tokio::spawn(async move {
                if let Err(err) = api_keys::touch(&pool, key_id, now).await {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "cannot record the key's last use"
                    );
                }
            });
        }
        Ok(AuthUser {
            user_id: user.id,
            key_id: key.id,
        })
    }
}

/// When this replica last wrote each key's `last_used_at`, so that busy keys do not cost a
/// database write per request.
#[derive(Debug, Default)]
pub struct Touches {
    last: Mutex<HashMap<ApiKeyId, Instant>>,
}

impl Touches {
    /// Whether the key's use should be written now (and notes that it is).
    pub fn due(&self, key: ApiKeyId) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().expect("touches lock");
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_touched_once_a_minute_per_replica() {
        let touches = Touches::default();
        let key = ApiKeyId::new();
        assert!(touches.due(key));
        assert!(!touches.due(key));
        assert!(touches.due(ApiKeyId::new()));
    }
}
