//! Authentication: the [`AuthUser`] extractor turns `Authorization: Bearer ci_...` or a browser's
//! session cookie into the caller, or answers 401 with a message that says which part to fix.
//! Every route decides from the caller alone, never from how it signed in; the one difference
//! is that a state-changing request signed in by cookie must come from the server's own pages
//! (its `Origin`), so that another site cannot act for a signed-in user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use chrono::{DateTime, Utc};
use ci_common::db::api_keys::{self, ApiKey, KeyScope, KeyState};
use ci_common::db::audit::{Action, Actor, AuditEntry};
use ci_common::db::sessions::{self, Session, SessionToken};
use ci_common::db::users::User;
use ci_common::keys::{KeyShape, SecretKey};
use ci_common::{ApiKeyId, UserId};
use futures_util::{Stream, StreamExt};

use crate::error::ApiError;
use crate::AppState;

/// How often one replica writes a key's `last_used_at` (the query is rate-limited as well).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The cookie that holds a browser's session token.
pub const SESSION_COOKIE: &str = "ci_session";

/// How often an open stream checks that its caller may still follow it: a sign-out, a revoked
/// key or a deactivated user ends a browser session's stream, and a member's removal from the
/// team ends their streams of the team's jobs, within this time.
pub const SESSION_RECHECK: Duration = Duration::from_secs(2);

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user_id: UserId,
    pub user_name: String,
    pub key_id: ApiKeyId,
    /// What the caller's key allows (a session has its key's).
    pub scope: KeyScope,
    /// `Some` when the caller signed in with a browser session rather than a key.
    pub session: Option<SignedIn>,
    /// The address the request came from ([`ClientAddr`]).
    pub source: String,
}

impl AuthUser {
    /// The caller as the audit log names it: its user, from its address.
    pub fn actor(&self) -> Actor {
        Actor::user(&self.user_name, self.user_id, &self.source)
    }

    /// An audit row of the caller: `action` on `target`, done (add detail and outcome to it).
    pub fn audit(&self, action: Action, target: impl Into<String>) -> AuditEntry {
        self.actor().entry(action, target)
    }
}

/// The address a request came from: the peer of its connection (`ConnectInfo`, which
/// [`crate::run`] serves with). Proxies are not trusted: behind one, this is the proxy's
/// address. A router served without connect info (a test's) gives `unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await;
        Ok(Self(match peer {
            Ok(ConnectInfo(addr)) => addr.ip().to_canonical().to_string(),
            Err(_) => "unknown".to_owned(),
        }))
    }
}

/// At most `per_minute` a minute for each key `K`, in bursts of as many: a token bucket per key
/// (`governor`), on this replica. Keys whose bucket is full again are forgotten once more than
/// [`PerMinute::MAX_KEYS`] are held, so the map stays bounded by those seen in the last minute.
pub struct PerMinute<K: std::hash::Hash + Eq + Clone> {
    limiter: governor::DefaultKeyedRateLimiter<K>,
    per_minute: u32,
}

impl<K: std::hash::Hash + Eq + Clone> PerMinute<K> {
    /// Keys held before those at rest are forgotten.
    pub const MAX_KEYS: usize = 4096;

    /// `None` for 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Self> {
        let rate = std::num::NonZeroU32::new(per_minute)?;
        Some(Self {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(rate)),
            per_minute,
        })
    }

    /// Counts one for `key`; past the rate, a 429 `code` whose message is `describe(the limit
    /// per minute)`, with the whole seconds (at least 1) until the next one is allowed in
    /// `Retry-After`.
    fn check(
        &self,
        key: &K,
        code: &'static str,
        describe: impl FnOnce(u32) -> String,
    ) -> Result<(), ApiError> {
        use governor::clock::Clock as _;
        if self.limiter.len() > Self::MAX_KEYS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ApiError::RateLimited {
                code,
                message: describe(self.per_minute),
                retry_after_secs: wait.as_secs() + 1,
            }
        })
    }
}

/// The operator's limit of requests per key and minute on this replica (`--key-rate-per-minute`).
pub type KeyRate = PerMinute<ApiKeyId>;

impl KeyRate {
    /// Counts a request of `key`; past the rate, a 429 `rate_limited`.
    fn check_request(&self, key: ApiKeyId) -> Result<(), ApiError> {
        self.check(&key, "rate_limited", |limit| {
            format!(
                "too many requests with this API key: at most {limit} a minute on this server; \
                 slow down, and try again after the time in Retry-After"
            )
        })
    }
}

/// The operator's limit of refused sign-ins per client address and minute on this replica
/// (`--sign-in-failures-per-minute`): past it, a refused sign-in is answered 429
/// `too_many_sign_ins` and not recorded in the audit log, so that nobody can fill the log (or
/// try keys) by posting wrong ones. Sign-ins with a key that works are never held back.
pub type SignInFailures = PerMinute<String>;

impl SignInFailures {
    /// Counts a refused sign-in from `source` (the [`ClientAddr`]); past the rate, the 429 to
    /// answer instead of the refusal.
    pub fn check_refused(&self, source: &str) -> Result<(), ApiError> {
        self.check(&source.to_owned(), "too_many_sign_ins", |limit| {
            format!(
                "too many refused sign-ins from this address: at most {limit} a minute on this \
                 server; check the API key (`ci-admin key list` shows yours), and try again \
                 after the time in Retry-After"
            )
        })
    }
}

/// The one rule of key scopes: a `read` key (or a session made from one) may make safe requests
/// (GET, HEAD, OPTIONS) and sign out, nothing else.
fn check_scope(scope: KeyScope, method: &Method, path: &str) -> Result<(), ApiError> {
    if scope == KeyScope::Read && !is_safe(method) && path != "/api/v1/session" {
        return Err(ApiError::ReadOnlyKey(
            "this API key is read-only (scope read): it can list, follow and download, but not \
             submit, cancel or change anything; use a key of scope submit (an administrator \
             creates one with `ci-admin key create --scope submit`)"
                .into(),
        ));
    }
    Ok(())
}

/// A browser session the request came with.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// Hex SHA-256 of the session's token.
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
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
        let Ok(ClientAddr(source)) = ClientAddr::from_request_parts(parts, state).await;
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
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
            let (key, user) = authenticate_key(state, key).await?;
            check_scope(key.scope, &parts.method, parts.uri.path())?;
            if let Some(rate) = &state.key_rate {
                rate.check_request(key.id)?;
            }
            return Ok(AuthUser {
                user_id: user.id,
                user_name: user.name,
                key_id: key.id,
                scope: key.scope,
                session: None,
                source,
            });
        }
        let Some(token) = session_cookie(&parts.headers) else {
            return Err(unauthorized(
                "missing_api_key",
                "no API key: send it as the header `Authorization: Bearer ci_...`, or sign in \
                 at /ui/ in a browser (an administrator creates keys with `ci-admin`)",
            ));
        };
        let user = authenticate_session(state, &token, source).await?;
        if !is_safe(&parts.method) {
            check_same_origin(&parts.headers)?;
        }
        check_scope(user.scope, &parts.method, parts.uri.path())?;
        if let Some(rate) = &state.key_rate {
            rate.check_request(user.key_id)?;
        }
        Ok(user)
    }
}

/// The user behind an API key, if the key and its user may be used now. Records the key's use.
pub async fn authenticate_key(state: &AppState, text: &str) -> Result<(ApiKey, User), ApiError> {
    let secret = SecretKey::parse(text).map_err(|problem| {
        unauthorized(
            "mistyped_api_key",
            format!("the API key is mistyped: {problem}; copy the whole key again"),
        )
    })?;
    let Some((key, user)) = api_keys::find_by_secret(&state.db, &secret).await? else {
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
    check_usable(&key, &user, now)?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    if state.touches.due(key.id) {
        let pool = state.db.clone();
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
    Ok((key, user))
}

/// Whether a key and its user may be used at `now`: the one rule for keys and for the sessions
/// made from them.
fn check_usable(key: &ApiKey, user: &User, now: DateTime<Utc>) -> Result<(), ApiError> {
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
    Ok(())
}

/// The session token in the request's cookies, if there is one that could be ours.
pub fn session_cookie(headers: &HeaderMap) -> Option<SessionToken> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .and_then(|c| SessionToken::parse(c.value()))
}

/// The caller behind a browser session, if the session still counts.
async fn authenticate_session(
    state: &AppState,
    token: &SessionToken,
    source: String,
) -> Result<AuthUser, ApiError> {
    let signed_out = || {
        unauthorized(
            "signed_out",
            "you are signed out (the sign-in ended or expired): sign in again with your API key",
        )
    };
    let Some((session, key, user)) = sessions::find(&state.db, &token.hash()).await? else {
        return Err(signed_out());
    };
    check_session(&session, &key, &user, Utc::now())?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    Ok(AuthUser {
        user_id: user.id,
        user_name: user.name,
        key_id: key.id,
        scope: key.scope,
        session: Some(SignedIn {
            token_hash: session.token_hash,
            expires_at: session.expires_at,
        }),
        source,
    })
}

/// Whether a found session counts at `now`: not expired, its key and user usable (the one rule
/// for requests and for open streams).
fn check_session(
    session: &Session,
    key: &ApiKey,
    user: &User,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if session.expires_at <= now {
        return Err(unauthorized(
            "signed_out",
            "you are signed out (the sign-in expired): sign in again with your API key",
        ));
    }
    check_usable(key, user, now)
}

/// Whether the session still counts: not ended, and [`check_session`].
async fn session_counts(state: &AppState, token_hash: &str) -> bool {
    match sessions::find(&state.db, token_hash).await {
        Ok(Some((session, key, user))) => check_session(&session, &key, &user, Utc::now()).is_ok(),
        Ok(None) => false,
        // The database is unreachable: keep the stream; it will fail on its own if that lasts.
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "cannot check a session");
            true
        }
    }
}

/// `stream` of job `job`, ended within [`SESSION_RECHECK`] of the caller losing access to it:
/// their browser session ending (sign-out, expiry, a revoked key, a deactivated user), or, for a
/// team's job they did not submit, their removal from the team. Other streams are not changed.
pub fn until_access_ends<S>(
    state: &AppState,
    user: &AuthUser,
    job: &ci_common::db::jobs::Job,
    stream: S,
) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
{
    let session = user.session.as_ref().map(|s| s.token_hash.clone());
    let through_team = job.team_id.is_some() && job.user_id != user.user_id;
    let (state, user_id, job_id) = (state.clone(), user.user_id, job.id);
    let ended = async move {
        if session.is_none() && !through_team {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(SESSION_RECHECK).await;
            if let Some(token_hash) = &session {
                if !session_counts(&state, token_hash).await {
                    tracing::info!("a signed-out session's stream ends");
                    return;
                }
            }
            if through_team && !still_sees(&state, user_id, job_id).await {
                tracing::info!(job.id = %job_id, "a stream ends: its caller left the job's team");
                return;
            }
        }
    };
    stream.take_until(Box::pin(ended))
}

/// Whether `user` still sees `job` (the visibility rule of [`ci_common::db::jobs`]).
async fn still_sees(state: &AppState, user: UserId, job: ci_common::JobId) -> bool {
    match ci_common::db::jobs::get_for_user(&state.db, job, user).await {
        Ok(found) => found.is_some(),
        // The database is unreachable: keep the stream; it will fail on its own if that lasts.
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "cannot check a stream's access");
            true
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A request that acts with a browser's cookie must come from this server's own pages: its
/// `Origin` must name the host the request was sent to. Browsers send `Origin` with every
/// cross-origin request and with same-origin POST/PUT/DELETE, so a missing one is refused too.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let authority = origin
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::CrossOrigin(format!(
            "a signed-in browser may change things only from this server's own pages (Origin \
             {}, host {}); other sites and scripts send an API key in `Authorization: Bearer ...`",
            origin.unwrap_or("missing"),
            host.unwrap_or("missing"),
        ))),
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
