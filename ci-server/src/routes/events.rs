//! `GET /api/v1/jobs/{id}/events`: the job's events as SSE, resumable from any replica with
//! `Last-Event-ID` (or `?after=N`), following the job live until its `complete` event.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::stream::{follow as follow_events, sse_response, Framing};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct EventsParams {
    pub after: Option<String>,
}

/// Where to resume: the `Last-Event-ID` header wins over `?after=`; the default is the start.
pub fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<i64, ApiError> {
    let parse = |text: &str, what: &str| {
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                "{what} must be the seq (a number) of the last event you received, not {text:?}"
            ))
            })
    };
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("?");
        if !text.trim().is_empty() {
            return parse(text, "Last-Event-ID");
        }
    }
    match after {
        Some(text) if !text.is_empty() => parse(text, "`after`"),
        _ => Ok(0),
    }
}

pub async fn follow(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(super::jobs::query_error)?;
    let after = resume_point(&headers, params.after.as_deref())?;
    let job = owned_job(&state, &user, id).await?;
    let live = !job.status.is_terminal();
    let frames = follow_events(&state, id, after, live, Framing::Named);
    Ok(sse_response(&state, &user, frames))
}
