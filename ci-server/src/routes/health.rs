//! `GET /health` (the process answers) and `GET /ready` (and its database does). No auth.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use ci_common::api::{ErrorBody, Health};

use crate::error::ApiError;
use crate::AppState;

/// `GET /health`: the process answers (without touching the database).
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /ready`: the process answers and its database does, within 5 s.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "health",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}` after a database round trip.",
            body = Health),
        (status = 503, description = "The database is not reachable or did not answer within \
            5 s (`unavailable`): send no requests to this replica.", body = ErrorBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let check = ci_common::db::ping(&state.db);
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Ok(Err(err)) => {
            tracing::warn!(error = format!("{err:#}"), "readiness check failed");
            Err(ApiError::Unavailable(
                "the database is not reachable; this replica cannot serve requests".into(),
            ))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer within 5 s; this replica cannot serve requests".into(),
        )),
    }
}
