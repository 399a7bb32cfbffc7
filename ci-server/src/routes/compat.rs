//! The original system's API, as a thin layer over the real one: `POST /submit`,
//! `/submit-stream`, `/submit-async`, `GET /jobs`, `/jobs/{id}`, `/jobs/{id}/stream`. Same
//! authentication, same isolation (another user's job is 404), in the original's words: a job is
//! `queued`, `running`, `completed` (the tests ran; `success` says whether they passed), `failed`
//! (it could not run) or `cancelled` ([`ci_common::JobStatus::legacy_word`]).
//!
//! Its streams carry only `id:` and `data:` lines (no `event:` names), which is what its client
//! and browsers' `EventSource.onmessage` listen for, and each log line ends with its newline
//! ([`OriginalEvent`]).

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use axum::Json;
use ci_common::api::{JobView, SubmittedJob};
use ci_common::db::{events, jobs as db_jobs};
use ci_common::JobId;
use futures_util::stream::{self, StreamExt};
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Serialize, Serializer};

use super::events::resume_point;
use super::jobs::{query_error, view_with_seq, ListParams, MAX_LIMIT};
use super::{accept_upload, owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::stream::{follow_original, sse_response, OriginalEvent};
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
    let frames = follow_original(&state, job.id, 0, true);
    Ok(with_job_header(
        sse_response(&state, &user, &job, frames),
        job.id,
    ))
}

/// `POST /submit-stream`: like `/submit`, but first sends `{"type":"job_id","job_id":...}`.
pub async fn submit_stream(
    State(state): State<AppState>,
    user: AuthUser,
    multipart: MultipartResult,
) -> Result<Response, ApiError> {
    let job = accept_upload(&state, &user, multipart).await?;
    let first = OriginalEvent::JobId { job_id: job.id }.frame();
    let frames = stream::once(async move { first }).chain(follow_original(&state, job.id, 0, true));
    Ok(with_job_header(
        sse_response(&state, &user, &job, frames),
        job.id,
    ))
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

/// A job as the original API shows it: its fields first (`job_id`, `status` in its words,
/// `success` once the job ended and `null` before, `start_time`, `end_time`), then ours.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginalJob(pub JobView);

/// The original's fields of a job.
const ORIGINAL_FIELDS: [&str; 5] = ["job_id", "status", "success", "start_time", "end_time"];

impl Serialize for OriginalJob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = &self.0;
        let serde_json::Value::Object(ours) =
            serde_json::to_value(view).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("a job is a JSON object"));
        };
        let mut map = serializer.serialize_map(Some(ours.len()))?;
        map.serialize_entry("job_id", &view.job_id)?;
        map.serialize_entry("status", view.status.legacy_word())?;
        map.serialize_entry(
            "success",
            &view.status.is_terminal().then_some(view.success),
        )?;
        map.serialize_entry("start_time", &view.start_time)?;
        map.serialize_entry("end_time", &view.end_time)?;
        for (key, value) in &ours {
            if !ORIGINAL_FIELDS.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// `GET /jobs`: the caller's jobs, newest first, as a plain list.
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: QueryResult<ListParams>,
) -> Result<Json<Vec<OriginalJob>>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let (limit, before) = params.parse(MAX_LIMIT)?;
    let jobs = db_jobs::list_for_user(&state.db, user.user_id, limit, before).await?;
    Ok(Json(
        jobs.iter().map(|job| OriginalJob(job.view())).collect(),
    ))
}

/// `GET /jobs/{id}`: one job (with the seq of its last event, as `/api/v1/jobs/{id}`).
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<OriginalJob>, ApiError> {
    Ok(Json(OriginalJob(view_with_seq(&state, &user, id).await?)))
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
        events::last_seq(&state.db, id).await?
    };
    let live = !job.status.is_terminal();
    if live || from_beginning || resume {
        let frames = follow_original(&state, id, after, live);
        return Ok(sse_response(&state, &user, &job, frames));
    }
    let notice = OriginalEvent::message("Job already completed.").frame();
    // The job's last event is its `complete` event.
    let frames = stream::once(async move { notice }).chain(follow_original(
        &state,
        id,
        (after - 1).max(0),
        false,
    ));
    Ok(sse_response(&state, &user, &job, frames))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ci_common::JobStatus;

    use super::*;

    fn view(status: JobStatus) -> JobView {
        let ended = status.is_terminal();
        JobView {
            job_id: JobId::new(),
            status,
            success: status.success(),
            task: "test".into(),
            args: Vec::new(),
            project: None,
            image: None,
            host: None,
            git: None,
            team: None,
            submitted_by: None,
            reason: (status == JobStatus::TimedOut).then(|| "timed out after 600s".into()),
            exit_code: ended.then_some(1),
            oom_killed: false,
            created_at: Utc::now(),
            start_time: (status != JobStatus::Queued).then(Utc::now),
            end_time: ended.then(Utc::now),
            cancel_requested: false,
            log_lines: 3,
            dropped_lines: 0,
            last_seq: Some(5),
            steps: None,
            controller: None,
            tests: None,
        }
    }

    #[test]
    fn jobs_on_the_original_paths_use_its_words_and_keep_our_fields() {
        for (status, word, success) in [
            (JobStatus::Queued, "queued", None),
            (JobStatus::Running, "running", None),
            (JobStatus::Passed, "completed", Some(true)),
            (JobStatus::Failed, "completed", Some(false)),
            (JobStatus::Error, "failed", Some(false)),
            (JobStatus::TimedOut, "failed", Some(false)),
            (JobStatus::Lost, "failed", Some(false)),
            (JobStatus::Cancelled, "cancelled", Some(false)),
        ] {
            let view = view(status);
            let ours = serde_json::to_value(&view).unwrap();
            let text = serde_json::to_string(&OriginalJob(view.clone())).unwrap();
            assert!(
                text.starts_with(&format!(
                    r#"{{"job_id":"{}","status":"{word}","success":"#,
                    view.job_id
                )),
                "{text}"
            );
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["success"], serde_json::json!(success), "{status}");
            // Every field of ours is there, once; only `status` and `success` differ.
            let (json, ours) = (json.as_object().unwrap(), ours.as_object().unwrap());
            assert_eq!(json.len(), ours.len(), "{text}");
            for (key, value) in ours {
                if key != "status" && key != "success" {
                    assert_eq!(&json[key], value, "{key}");
                }
            }
            assert_eq!(
                ours["status"],
                status.as_str(),
                "the v1 view keeps the state"
            );
        }
    }
}
