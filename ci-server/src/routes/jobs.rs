//! `/api/v1/jobs`: upload, list, show and cancel jobs.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use ci_common::api::{JobList, JobView};
use ci_common::db::{events, jobs as db_jobs};
use ci_common::{JobId, JobStatus};
use serde::Deserialize;

use super::{accept_upload, owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// `POST /api/v1/jobs`: multipart `file` (zip) and optional `task` → 201 with the queued job.
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = accept_upload(&state, &user, multipart).await?;
    let mut view = job.view();
    view.last_seq = Some(0);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub limit: Option<String>,
    pub before: Option<String>,
    /// Only jobs in this state (`GET /api/v1/jobs` only).
    pub status: Option<String>,
    /// Only jobs of this task (`GET /api/v1/jobs` only).
    pub task: Option<String>,
}

impl ListParams {
    /// The page size and the job to continue after, or what is wrong with them.
    pub fn parse(&self, default: i64) -> Result<(i64, Option<JobId>), ApiError> {
        let limit = match self.limit.as_deref() {
            None | Some("") => default,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n >= 1 => n.min(MAX_LIMIT),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "`limit` must be a number from 1 to {MAX_LIMIT}, not {text:?}"
                    )))
                }
            },
        };
        let before = match self.before.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "`before` must be a job id (the `next_before` of the previous page), not {text:?}"
                ))
            })?),
        };
        Ok((limit, before))
    }

    /// The `status` and `task` filters, or what is wrong with them.
    pub fn filter(&self) -> Result<db_jobs::JobFilter, ApiError> {
        let status = match self.status.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<JobStatus>().map_err(|_| {
                let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::BadRequest(format!(
                    "`status` must be one of {}, not {text:?}",
                    known.join(", ")
                ))
            })?),
        };
        let task = self
            .task
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(db_jobs::JobFilter { status, task })
    }
}

pub fn query_error(err: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("bad query string: {}", err.body_text()))
}

/// `GET /api/v1/jobs?limit=N&before=<id>&status=S&task=T`: the caller's jobs, newest first,
/// only those in state `S` and of task `T` when given.
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let (limit, before) = params.parse(DEFAULT_LIMIT)?;
    let filter = params.filter()?;
    let jobs = db_jobs::list_filtered(&state.pool, user.user_id, limit, before, &filter).await?;
    let next_before = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|job| job.id))
        .flatten();
    Ok(Json(JobList {
        jobs: jobs.iter().map(db_jobs::Job::view).collect(),
        next_before,
    }))
}

/// `GET /api/v1/jobs/{id}`: one job, with the seq of its last event.
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(view_with_seq(&state, &user, id).await?))
}

/// `POST /api/v1/jobs/{id}/retry`: queues a new job that runs the caller's job again, with the
/// same source, task, arguments, image and options → 201 + the new job; 410 when the source is
/// no longer kept.
pub async fn retry(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = db_jobs::retry(&state.pool, user.user_id, id)
        .await
        .map_err(|e| match e {
            db_jobs::RetryError::NotFound => ApiError::JobNotFound,
            db_jobs::RetryError::SourceExpired(id) => ApiError::SourceExpired(id),
            db_jobs::RetryError::Db(e) => e.into(),
        })?;
    tracing::info!(job.id = %job.id, retry_of = %id, "job queued again");
    Ok((StatusCode::CREATED, Json(job.view())))
}

/// `?project=NAME` of a task's status.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TaskParams {
    pub project: Option<String>,
}

/// `GET /api/v1/tasks/{name}?project=P`: the caller's latest job of the task (in project `P`
/// when given), as `GET /api/v1/jobs/{id}` shows it; 404 when there is none.
pub async fn task_status(
    State(state): State<AppState>,
    user: AuthUser,
    axum::extract::Path(task): axum::extract::Path<String>,
    params: Result<Query<TaskParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let project = params.project.as_deref().filter(|p| !p.is_empty());
    let job = db_jobs::latest_of_task(&state.pool, user.user_id, &task, project)
        .await?
        .ok_or(ApiError::JobNotFound)?;
    Ok(Json(view_with_seq(&state, &user, job.id).await?))
}

pub async fn view_with_seq(
    state: &AppState,
    user: &AuthUser,
    id: JobId,
) -> Result<JobView, ApiError> {
    let job = owned_job(state, user, id).await?;
    let mut view = job.view();
    view.last_seq = Some(events::last_seq(&state.pool, id).await?);
    let steps = ci_common::db::steps::list(&state.pool, id).await?;
    view.steps = Some(steps.iter().map(|s| s.view()).collect());
    Ok(view)
}

/// `POST /api/v1/jobs/{id}/cancel`: a queued job is cancelled at once, a running one is stopped
/// by the controller (202 either way); a job that already ended answers 409.
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = owned_job(&state, &user, id).await?;
    let ended = |job: &db_jobs::Job| ApiError::AlreadyEnded {
        job: job.id,
        status: job.status,
        reason: job.reason.clone(),
    };
    if job.status.is_terminal() {
        return Err(ended(&job));
    }
    let job = db_jobs::request_cancel(&state.pool, id, user.user_id)
        .await?
        .ok_or(ApiError::JobNotFound)?;
    if job.status.is_terminal() && job.status != JobStatus::Cancelled {
        return Err(ended(&job));
    }
    tracing::info!(job.id = %id, status = %job.status, "cancel requested");
    let mut view = job.view();
    view.last_seq = Some(events::last_seq(&state.pool, id).await?);
    Ok((StatusCode::ACCEPTED, Json(view)))
}
