//! `/api/v1/webhooks`: a user's outgoing webhooks (add, list, remove) and their deliveries.
//! The controller sends them ([`ci_common::webhooks`] describes a delivery); this server only
//! registers them, checking the URL against the operator's rules as the controller will.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use ci_common::api::ErrorBody;
use ci_common::db::audit::{self, Action};
use ci_common::db::webhooks as db_webhooks;
use ci_common::webhooks::{
    generate_secret, parse_events, CreatedWebhook, DeliveryList, NewWebhook, WebhookList,
    MAX_URL_LEN, MAX_WEBHOOKS_PER_USER,
};
use ci_common::WebhookId;
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// How long the check of a new webhook's URL may take (its host's lookup).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries listed unless `limit` says otherwise, and the most listed.
const DEFAULT_DELIVERIES: i64 = 50;
const MAX_DELIVERIES: i64 = 500;

/// The `{id}` of a webhook route. A malformed id is answered like a missing webhook (404).
pub struct WebhookPath(pub WebhookId);

impl<S: Send + Sync> FromRequestParts<S> for WebhookPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::WebhookNotFound)?;
        id.parse()
            .map(WebhookPath)
            .map_err(|_| ApiError::WebhookNotFound)
    }
}

/// `POST /api/v1/webhooks` with `{"url", "events"}`: 201 with the webhook and its secret, which
/// is not shown again. The URL must be one the operator's rules allow (`ci-controller
/// --webhook-allow`), checked with its host's addresses as the controller will check them.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The webhook, with its `secret` (shown this once).",
            body = CreatedWebhook),
        (status = 400, description = "The body is not `{\"url\", \"events\"}` or names an \
            unknown event (`bad_request`), the URL is refused by the operator's rules \
            (`webhook_url_refused`; the message says why and which flag allows it), or the \
            caller has as many webhooks as allowed (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    body: Result<Json<NewWebhook>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let Json(new) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send JSON {{\"url\": \"https://...\", \"events\": [\"job.finished\"]}}",
            rejection.body_text()
        ))
    })?;
    let events = parse_events(&new.events).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let url = new.url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::BadRequest(format!(
            "the URL is longer than {MAX_URL_LEN} bytes"
        )));
    }
    let policy = ci_common::db::policy::current(&state.db).await?;
    let allow = policy
        .webhook_allowlist()
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("the published rules")))?;
    match tokio::time::timeout(CHECK_TIMEOUT, allow.check(url)).await {
        Ok(Ok(_)) => {}
        Ok(Err(refused)) => return Err(ApiError::WebhookRefused(refused.to_string())),
        Err(_) => {
            return Err(ApiError::WebhookRefused(format!(
                "the host of {url:?} could not be resolved within {}s; check the name",
                CHECK_TIMEOUT.as_secs()
            )))
        }
    }
    let existing = db_webhooks::list_for_user(&state.db, user.user_id).await?;
    if existing.len() >= MAX_WEBHOOKS_PER_USER {
        return Err(ApiError::BadRequest(format!(
            "you have {} webhooks, the most allowed: remove one first (`ci webhooks remove ID`)",
            existing.len()
        )));
    }
    let secret = generate_secret();
    let mut tx = state.db.begin_write().await?;
    let hook = db_webhooks::create(&mut tx, user.user_id, url, &secret, &events).await?;
    let entry = user
        .audit(Action::WebhookAdd, format!("webhook {}", hook.id))
        .detail(json!({ "url": audit::url_origin(url), "events": hook.events }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(webhook.id = %hook.id, url = hook.url, events = hook.events, "webhook added");
    let view = hook.view();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: view.id,
            url: view.url,
            events: view.events,
            created_at: view.created_at,
            secret,
        }),
    ))
}

/// `GET /api/v1/webhooks`: the caller's webhooks, oldest first, without their secrets.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The caller's webhooks.", body = WebhookList),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<WebhookList>, ApiError> {
    let hooks = db_webhooks::list_for_user(&state.db, user.user_id).await?;
    Ok(Json(WebhookList {
        webhooks: hooks.iter().map(db_webhooks::Webhook::view).collect(),
    }))
}

/// `DELETE /api/v1/webhooks/{id}`: removes the caller's webhook and its deliveries (those not
/// sent yet are not sent) → 204.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(crate::openapi::WebhookIdParam),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
        (status = 404, response = crate::openapi::WebhookNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    WebhookPath(id): WebhookPath,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    if !db_webhooks::delete_for_user(&mut tx, id, user.user_id).await? {
        return Err(ApiError::WebhookNotFound);
    }
    audit::record(
        &mut tx,
        &user.audit(Action::WebhookRemove, format!("webhook {id}")),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(webhook.id = %id, "webhook removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit=N` of a webhook's deliveries.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// Deliveries listed (default 50; more than 500 is 500).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<String>,
}

/// `GET /api/v1/webhooks/{id}/deliveries?limit=N`: the webhook's latest deliveries, newest
/// first: state, attempts, the last answer's status and what went wrong.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(crate::openapi::WebhookIdParam, DeliveriesParams),
    responses(
        (status = 200, description = "The latest deliveries, newest first.", body = DeliveryList),
        (status = 400, description = "`limit` is not a number from 1 to 500, or the query \
            string cannot be read (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::WebhookNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    user: AuthUser,
    WebhookPath(id): WebhookPath,
    params: Result<Query<DeliveriesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(params) = params.map_err(super::jobs::query_error)?;
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_DELIVERIES,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_DELIVERIES),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be a number from 1 to {MAX_DELIVERIES}, not {text:?}"
                )))
            }
        },
    };
    if db_webhooks::get_for_user(&state.db, id, user.user_id)
        .await?
        .is_none()
    {
        return Err(ApiError::WebhookNotFound);
    }
    let rows = db_webhooks::deliveries_for_user(&state.db, id, user.user_id, limit).await?;
    Ok(Json(DeliveryList {
        deliveries: rows.iter().map(db_webhooks::Delivery::view).collect(),
    }))
}
