//! `/api/v1/secrets`: secret variables of the caller (or, with `?team=NAME`, of a team the caller
//! is a member of). Values are sealed with the operator's `--secrets-key-file` before they are
//! stored and are never returned; the controller gives them to the steps of the tasks that list
//! them (`secrets = [...]`) and masks them in the log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ci_common::db::audit::{self, Action};
use ci_common::db::secret_variables::{self as db_secrets, SecretOwner, SecretVariable};
use ci_common::secrets::SecretsKey;
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// The body of `PUT /api/v1/secrets/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// One line of 8 to 4096 bytes.
    pub value: String,
}

/// `GET /api/v1/secrets`: names, never values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretVariable>,
}

/// Whose secrets a request is about: `?team=NAME` for a team's (the caller must be a member).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretScope {
    /// The team whose secrets these are (one the caller is a member of); the caller's own
    /// without it.
    pub team: Option<String>,
}

impl SecretScope {
    /// The audit log's target for the secret `name` of this scope.
    fn target(&self, name: &str) -> String {
        match self
            .team
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(team) => format!("secret {name} of team {team}"),
            None => format!("secret {name}"),
        }
    }

    async fn owner(&self, state: &AppState, user: &AuthUser) -> Result<SecretOwner, ApiError> {
        Ok(
            match super::member_team(state, user.user_id, self.team.as_deref()).await? {
                Some(team) => SecretOwner::Team(team),
                None => SecretOwner::User(user.user_id),
            },
        )
    }
}

fn key(state: &AppState) -> Result<&SecretsKey, ApiError> {
    state.secrets.as_ref().ok_or_else(|| {
        ApiError::Disabled(
            "this service keeps no secret variables: the operator has not set \
             --secrets-key-file on the server and the controller"
                .into(),
        )
    })
}

fn query(
    params: Result<Query<SecretScope>, axum::extract::rejection::QueryRejection>,
) -> Result<SecretScope, ApiError> {
    params.map(|Query(q)| q).map_err(super::jobs::query_error)
}

/// `PUT /api/v1/secrets/{name}`: stores (or replaces) a secret variable.
#[utoipa::path(
    put,
    path = "/api/v1/secrets/{name}",
    operation_id = "set_secret",
    tag = "secrets",
    params(
        ("name" = String, Path, description = "An environment variable's name, e.g. PYPI_TOKEN."),
        SecretScope,
    ),
    request_body = SetSecret,
    responses(
        (status = 200, description = "Stored (the value is not returned).", body = SecretVariable),
        (status = 400, description = "Not the JSON asked for (`bad_request`).", body = ci_common::api::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, description = "The operator has not set a secrets key (`disabled`).", body = ci_common::api::ErrorBody),
        (status = 404, description = "`team` names no team the caller is a member of (`not_found`).", body = ci_common::api::ErrorBody),
        (status = 422, description = "An invalid name or value (`invalid`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn set(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    scope: Result<Query<SecretScope>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<SetSecret>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SecretVariable>, ApiError> {
    let key = key(&state)?;
    let scope = query(scope)?;
    let owner = scope.owner(&state, &user).await?;
    let Json(body) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send {{\"value\": ...}}",
            rejection.body_text()
        ))
    })?;
    ci_common::secrets::check_variable_name(&name).map_err(ApiError::Invalid)?;
    ci_common::secrets::check_variable_value(&body.value).map_err(ApiError::Invalid)?;
    let mut tx = state.db.begin_write().await?;
    let stored = db_secrets::set(&mut tx, key, owner, &name, &body.value, &user.user_name).await?;
    audit::record(&mut tx, &user.audit(Action::SecretSet, scope.target(&name))).await?;
    tx.commit().await?;
    tracing::info!(name, "secret variable stored");
    Ok(Json(stored))
}

/// `GET /api/v1/secrets`: the names of the caller's (or the team's) secret variables.
#[utoipa::path(
    get,
    path = "/api/v1/secrets",
    operation_id = "list_secrets",
    tag = "secrets",
    params(SecretScope),
    responses(
        (status = 200, description = "The secret variables by name, without values.", body = SecretList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "`team` names no team the caller is a member of (`not_found`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    scope: Result<Query<SecretScope>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SecretList>, ApiError> {
    let owner = query(scope)?.owner(&state, &user).await?;
    Ok(Json(SecretList {
        secrets: db_secrets::list(&state.db, owner).await?,
    }))
}

/// `DELETE /api/v1/secrets/{name}`: removes a secret variable.
#[utoipa::path(
    delete,
    path = "/api/v1/secrets/{name}",
    operation_id = "remove_secret",
    tag = "secrets",
    params(("name" = String, Path, description = "The variable's name."), SecretScope),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No such secret variable, or `team` names no team the \
            caller is a member of (`not_found`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    scope: Result<Query<SecretScope>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let scope = query(scope)?;
    let owner = scope.owner(&state, &user).await?;
    let mut tx = state.db.begin_write().await?;
    if db_secrets::remove(&mut tx, owner, &name).await? {
        audit::record(
            &mut tx,
            &user.audit(Action::SecretRemove, scope.target(&name)),
        )
        .await?;
        tx.commit().await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no secret variable {name:?}: `ci secrets list` shows them"
        )))
    }
}
