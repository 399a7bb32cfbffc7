//! `/api/v1/git-credentials`: a user's credentials for private git remotes, one per host. The
//! password (or token) is sealed with the operator's `--secrets-key-file` before it is stored
//! and is never returned; only the fetch step of that user's jobs from that host gets it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ci_common::db::audit::{self, Action};
use ci_common::db::git_credentials::{self as db_credentials, GitCredential};
use ci_common::secrets::SecretsKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// Longest user name or password accepted, in bytes.
pub const FIELD_MAX_LEN: usize = 4096;

/// The body of `PUT /api/v1/git-credentials/{host}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCredential {
    pub username: String,
    /// A password or an access token.
    pub password: String,
}

/// `GET /api/v1/git-credentials`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<GitCredential>,
}

fn key(state: &AppState) -> Result<&SecretsKey, ApiError> {
    state.secrets.as_ref().ok_or_else(|| {
        ApiError::Disabled(
            "this service keeps no git credentials: the operator has not set \
             --secrets-key-file on the server and the controller"
                .into(),
        )
    })
}

fn check_host(host: &str) -> Result<String, ApiError> {
    let host = host.trim().to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(host)
    } else {
        Err(ApiError::Invalid(format!(
            "invalid host {host:?}: give the remote's host as in its URL, e.g. github.com"
        )))
    }
}

/// `PUT /api/v1/git-credentials/{host}`: stores (or replaces) the caller's credential for the
/// host; jobs of the caller fetching over HTTPS or HTTP from that host use it.
#[utoipa::path(
    put,
    path = "/api/v1/git-credentials/{host}",
    operation_id = "set_git_credential",
    tag = "git-credentials",
    params(("host" = String, Path, description = "The remote's host, e.g. github.com.")),
    request_body = SetCredential,
    responses(
        (status = 200, description = "Stored (the password is not returned).", body = GitCredential),
        (status = 400, description = "Not the JSON asked for (`bad_request`).", body = ci_common::api::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 422, description = "An invalid host, user name or password (`invalid`).", body = ci_common::api::ErrorBody),
        (status = 403, description = "The operator has not set a secrets key (`disabled`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn set(
    State(state): State<AppState>,
    user: AuthUser,
    Path(host): Path<String>,
    body: Result<Json<SetCredential>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<GitCredential>, ApiError> {
    let key = key(&state)?;
    let Json(body) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send {{\"username\": ..., \"password\": ...}}",
            rejection.body_text()
        ))
    })?;
    let host = check_host(&host)?;
    let bad = |s: &str| s.is_empty() || s.len() > FIELD_MAX_LEN || s.chars().any(char::is_control);
    if bad(&body.username) || bad(&body.password) {
        return Err(ApiError::Invalid(format!(
            "invalid credential: a user name and a password (or token) of 1 to {FIELD_MAX_LEN} \
             bytes without control characters"
        )));
    }
    let mut tx = state.db.begin_write().await?;
    let stored = db_credentials::set(
        &mut tx,
        key,
        user.user_id,
        &host,
        &body.username,
        &body.password,
    )
    .await?;
    // The user name, not the password.
    let entry = user
        .audit(Action::GitCredentialSet, format!("git-credential {host}"))
        .detail(json!({ "username": stored.username }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(host, "git credential stored");
    Ok(Json(stored))
}

/// `GET /api/v1/git-credentials`: the caller's credentials by host, without their secrets.
#[utoipa::path(
    get,
    path = "/api/v1/git-credentials",
    operation_id = "list_git_credentials",
    tag = "git-credentials",
    responses(
        (status = 200, description = "The caller's credentials, by host.", body = CredentialList),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<CredentialList>, ApiError> {
    Ok(Json(CredentialList {
        credentials: db_credentials::list(&state.db, user.user_id).await?,
    }))
}

/// `DELETE /api/v1/git-credentials/{host}`: forgets the caller's credential for the host.
#[utoipa::path(
    delete,
    path = "/api/v1/git-credentials/{host}",
    operation_id = "remove_git_credential",
    tag = "git-credentials",
    params(("host" = String, Path, description = "The remote's host.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "The caller has none for this host (`not_found`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(host): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    if db_credentials::remove(&mut tx, user.user_id, &host).await? {
        let target = format!("git-credential {}", host.to_ascii_lowercase());
        audit::record(&mut tx, &user.audit(Action::GitCredentialRemove, target)).await?;
        tx.commit().await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no git credential for {host}: `ci git-credentials list` shows yours"
        )))
    }
}
