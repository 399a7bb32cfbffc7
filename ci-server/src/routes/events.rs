//! `GET /api/v1/jobs/{id}/events`: the job's events as SSE, resumable from any replica with
//! `Last-Event-ID` (or `?after=N`), following the job live until its `complete` event.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use ci_common::api::{ErrorBody, StreamEvent};
use serde::Deserialize;

use super::{owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::stream::{follow as follow_events, sse_response, Framing};
use crate::AppState;

/// Where a stream starts: after the event with seq `after` (the `Last-Event-ID` header wins).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Send only the events after this seq (default 0: from the start).
    #[param(value_type = Option<i64>, minimum = 0)]
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

/// `GET /api/v1/jobs/{id}/events`: the job's events from the start (or after `Last-Event-ID`
/// or `?after=N`) as server-sent events, live until its `complete` event.
///
/// Each event is `id: <seq>`, `event: <type>` and one `data:` line of JSON with the same
/// `type`; keep-alive comments are sent while the job is quiet. The stream of a job that already
/// ended holds its stored events and ends.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/events",
    operation_id = "follow_job_events",
    tag = "jobs",
    params(
        crate::openapi::JobIdParam,
        EventsParams,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0,
            description = "The seq of the last event received: resume after it (wins over \
            `after`)."),
    ),
    responses(
        (status = 200, description = "The events as `text/event-stream; charset=utf-8`: the \
            schema is that of each event's `data`, whose `type` is its `event:` name.",
            content_type = "text/event-stream", body = StreamEvent,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer \
                    the stream"),
            )),
        (status = 400, description = "`after` or `Last-Event-ID` is not a seq \
            (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
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
    Ok(sse_response(&state, &user, &job, frames))
}
