//! The original system's API, as a thin layer over the real one: `POST /submit`,
//! `/submit-stream`, `/submit-async`, `GET /jobs`, `/jobs/{id}`, `/jobs/{id}/stream`. Same
//! authentication, same isolation (another user's job is 404), real statuses.
//!
//! Its streams carry only `id:` and `data:` lines (no `event:` names), which is what its client
//! and browsers' `EventSource.onmessage` listen for.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use axum::Json;
use ci_common::api::{JobView, StreamEvent, SubmittedJob};
use ci_common::db::{events, jobs as db_jobs};
use ci_common::JobId;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use super::events::resume_point;
use super::jobs::{query_error, ListParams, MAX_LIMIT};
use super::{accept_upload, owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::hub::data_frame;
use crate::stream::{follow, sse_response, Framing};
use crate::AppState;

type MultipartResult = Result<Multipart, MultipartRejection>;
type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn with_job_header(mut response: Response, id: JobId) -> Response {
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-job-id"), value);
    }
    response
}

/// `POST /submit`: uploads and answers with the job's event stream from its beginning.
pub async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    multipart: MultipartResult,
) -> Result<Response, ApiError> {
    let job = accept_upload(&state, &user, multipart).await?;
    let frames = follow(&state, job.id, 0, true, Framing::Unnamed);
    Ok(with_job_header(sse_response(&state, frames), job.id))
}

/// `POST /submit-stream`: like `/submit`, but first sends `{"type":"job_id","job_id":...}`.
pub async fn submit_stream(
    State(state): State<AppState>,
    user: AuthUser,
    multipart: MultipartResult,
) -> Result<Response, ApiError> {
    let job = accept_upload(&state, &user, multipart).await?;
    let first = StreamEvent::JobId { job_id: job.id };
    let first = data_frame(&serde_json::to_string(&first).expect("serializes"));
    let frames =
        stream::once(async move { first }).chain(follow(&state, job.id, 0, true, Framing::Unnamed));
    Ok(with_job_header(sse_response(&state, frames), job.id))
}

/// `POST /submit-async` → `{"job_id": "..."}`.
pub async fn submit_async(
    State(state): State<AppState>,
    user: AuthUser,
    multipart: MultipartResult,
) -> Result<Json<SubmittedJob>, ApiError> {
    let job = accept_upload(&state, &user, multipart).await?;
    Ok(Json(SubmittedJob { job_id: job.id }))
}

/// `GET /jobs`: the caller's jobs, newest first, as a plain list.
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: QueryResult<ListParams>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let (limit, before) = params.parse(MAX_LIMIT)?;
    let jobs = db_jobs::list_for_user(&state.pool, user.user_id, limit, before).await?;
    Ok(Json(jobs.iter().map(db_jobs::Job::view).collect()))
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamParams {
    pub from_beginning: Option<String>,
}

fn parse_bool(text: Option<&str>) -> Result<bool, ApiError> {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`from_beginning` must be true or false, not {other:?}"
        ))),
    }
}

/// `GET /jobs/{id}/stream?from_beginning=true|false`: the job's events from its beginning, or
/// only new ones (the default). A finished job without `from_beginning` answers
/// `Job already completed.` and its `complete` event, as the original did.
pub async fn stream(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
    headers: HeaderMap,
    params: QueryResult<StreamParams>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let from_beginning = parse_bool(params.from_beginning.as_deref())?;
    let job = owned_job(&state, &user, id).await?;
    let resume = headers.contains_key("last-event-id");
    let after = if from_beginning || resume {
        resume_point(&headers, None)?
    } else {
        events::last_seq(&state.pool, id).await?
    };
    let live = !job.status.is_terminal();
    if live || from_beginning || resume {
        let frames = follow(&state, id, after, live, Framing::Unnamed);
        return Ok(sse_response(&state, frames));
    }
    let notice = serde_json::json!({"type": "log", "data": "Job already completed."});
    let notice = data_frame(&notice.to_string());
    // The job's last event is its `complete` event.
    let frames = stream::once(async move { notice }).chain(follow(
        &state,
        id,
        (after - 1).max(0),
        false,
        Framing::Unnamed,
    ));
    Ok(sse_response(&state, frames))
}
