//! `GET /health` (the process answers) and `GET /ready` (and its database does). No auth.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use ci_common::api::Health;

use crate::error::ApiError;
use crate::AppState;

pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let check = ci_common::db::ping(&state.pool);
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
