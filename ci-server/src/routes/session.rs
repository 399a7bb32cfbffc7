//! `/api/v1/session`: browser sign-in. A user signs in once with an API key and gets a session
//! cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind HTTPS) that every `/api/v1` route
//! and stream accepts in place of the key.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::header::{HeaderValue, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use ci_common::api::{ErrorBody, SessionView};
use ci_common::db::audit::{self, Action, Actor, Outcome};
use ci_common::db::{api_keys, sessions};
use ci_common::keys::SecretKey;
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{authenticate_key, check_same_origin, AuthUser, ClientAddr, SESSION_COOKIE};
use crate::error::ApiError;
use crate::AppState;

/// The body of `POST /api/v1/session`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    /// A whole API key, `ci_...`.
    pub api_key: String,
}

/// `POST /api/v1/session` with `{"api_key": "ci_..."}`: 201 with [`SessionView`] and the
/// session cookie. A key that could not be used is a 401 that says why, as for any request, and
/// is recorded in the audit log; past `--sign-in-failures-per-minute` such refusals from one
/// address, a 429 instead, not recorded. A request from another site's page (its `Origin`) is a
/// 403.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "sign_in",
    tag = "session",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: the session's cookie is set.", body = SessionView,
            headers(("Set-Cookie" = String, description = "`ci_session=...; HttpOnly; \
                SameSite=Strict; Path=/; Max-Age=...` (`Secure` behind HTTPS)"))),
        (status = 400, description = "The body is not JSON `{\"api_key\": \"ci_...\"}` \
            (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
        (status = 429, response = crate::openapi::SignInsLimited),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    // Another site must not sign a browser in either (it could then act as that user).
    if headers.contains_key(ORIGIN) {
        check_same_origin(&headers)?;
    }
    let Json(body) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send JSON {{\"api_key\": \"ci_...\"}}",
            rejection.body_text()
        ))
    })?;
    let text = body.api_key.trim();
    let (key, user) = match authenticate_key(&state, text).await {
        Ok(found) => found,
        Err(refused) => {
            if let Some(limit) = &state.sign_in_failures {
                limit.check_refused(&source)?;
            }
            record_denied_sign_in(&state, &source, text, &refused).await;
            return Err(refused);
        }
    };
    let ttl = chrono::Duration::from_std(state.config.session_ttl)
        .unwrap_or_else(|_| chrono::Duration::days(7));
    let mut tx = state.db.begin_write().await?;
    let (token, session) = sessions::create(&mut tx, &key, ttl, Utc::now()).await?;
    let entry = Actor::user(&user.name, user.id, &source)
        .entry(Action::SessionSignIn, format!("key {}", key.label()))
        .detail(json!({ "key_id": key.id, "expires_at": session.expires_at }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, "signed in");
    let cookie = Cookie::build((SESSION_COOKIE, token.expose().to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(is_https(&headers))
        .max_age(cookie::time::Duration::seconds(ttl.num_seconds()))
        .build();
    let view = SessionView {
        user_id: user.id,
        user_name: user.name,
        expires_at: Some(session.expires_at),
    };
    Ok(with_cookie(
        (StatusCode::CREATED, Json(view)).into_response(),
        &cookie,
    ))
}

/// `GET /api/v1/session`: who the caller is ([`SessionView`]); 401 when not signed in.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    operation_id = "current_session",
    tag = "session",
    responses(
        (status = 200, description = "The caller, and when its session ends (`null` for an API \
            key).", body = SessionView),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn current(user: AuthUser) -> Json<SessionView> {
    Json(SessionView {
        user_id: user.user_id,
        user_name: user.user_name,
        expires_at: user.session.map(|s| s.expires_at),
    })
}

/// `DELETE /api/v1/session`: signs out. The session ends at once (open streams of it end within
/// [`crate::auth::SESSION_RECHECK`]) and the cookie is cleared; 204.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    operation_id = "sign_out",
    tag = "session",
    responses(
        (status = 204, description = "Signed out (nothing to end for an API key): the cookie is \
            cleared.", headers(("Set-Cookie" = String, description = "`ci_session=; Max-Age=0; \
            ...`"))),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: AuthUser,
) -> Result<Response, ApiError> {
    if let Some(session) = &user.session {
        let mut tx = state.db.begin_write().await?;
        if sessions::end(&mut tx, &session.token_hash).await? {
            let entry = user
                .audit(Action::SessionSignOut, "session")
                .detail(json!({ "key_id": user.key_id }));
            audit::record(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        tracing::info!(user.id = %user.user_id, "signed out");
    }
    let cookie = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(is_https(&headers))
        .max_age(cookie::time::Duration::ZERO)
        .build();
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &cookie))
}

/// Records a refused sign-in (outcome `denied`) on its own: who the key belongs to when it is
/// known (a revoked or expired key, a deactivated user), else [`audit::UNKNOWN_ACTOR`]; never
/// the key. A failure to record is logged; the answer stays the refusal.
async fn record_denied_sign_in(state: &AppState, source: &str, text: &str, refused: &ApiError) {
    let known = match SecretKey::parse(text) {
        Ok(secret) => api_keys::find_by_secret(&state.db, &secret)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let entry = match &known {
        Some((key, user)) => Actor::user(&user.name, user.id, source)
            .entry(Action::SessionSignIn, format!("key {}", key.label()))
            .detail(json!({ "code": refused.code(), "key_id": key.id })),
        None => Actor::unknown(source)
            .entry(Action::SessionSignIn, "key (unknown)")
            .detail(json!({ "code": refused.code() })),
    };
    let entry = entry.outcome(Outcome::Denied);
    if let Err(err) = audit::record(&state.db, &entry).await {
        tracing::error!(
            error = format!("{:#}", anyhow::Error::new(err)),
            "cannot record a refused sign-in"
        );
    }
}

/// Whether the browser reached the server over HTTPS: a TLS proxy in front says so in
/// `X-Forwarded-Proto`, and the page's `Origin` does too.
fn is_https(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    header("x-forwarded-proto").is_some_and(|p| p == "https")
        || header("origin").is_some_and(|o| o.starts_with("https://"))
}

fn with_cookie(mut response: Response, cookie: &Cookie<'_>) -> Response {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}
