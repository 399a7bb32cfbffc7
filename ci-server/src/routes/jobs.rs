//! `/api/v1/jobs`: upload, list, show and cancel jobs.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use ci_common::api::{ControllerState, ErrorBody, JobList, JobView};
use ci_common::db::audit::{self, Action};
use ci_common::db::{events, jobs as db_jobs};
use ci_common::{JobId, JobStatus};
use serde::Deserialize;
use serde_json::json;

use super::{accept_upload, owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// `POST /api/v1/jobs`: multipart `file` (zip) and optional `task` → 201 with the queued job;
/// or JSON `{"git": {"url", "ref"}, "task", "args"}` for a job whose project is fetched from
/// git (see [`ci_common::git`]).
///
/// The archive, the project's `[tool.ci]`, the image and the retries (or the git remote) are
/// checked against the operator's policy first; nothing is stored when anything is wrong.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    operation_id = "create_job",
    tag = "jobs",
    request_body(
        content(
            (inline(super::UploadForm) = "multipart/form-data"),
            (ci_common::git::GitJobRequest = "application/json"),
        ),
        description = "The project's zip and the job's options; or, as JSON, the git remote \
            and ref to fetch the project from, the task and its arguments."
    ),
    responses(
        (status = 201, description = "The job, queued (`last_seq` 0).", body = JobView),
        (status = 400, description = "Not a multipart body, no `file` field or more than one \
            (`bad_request`), or an empty file (`empty_upload`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
        (status = 404, description = "`team` names no team the caller is a member of \
            (`not_found`).", body = ErrorBody),
        (status = 413, description = "The upload is larger than the server's limit \
            (`too_large`), or the archive has too many entries (`too_many_entries`) or unpacks \
            to too much (`unpacked_too_large`).", body = ErrorBody),
        (status = 422, description = "A field is invalid (`invalid`), the archive is refused \
            for its content (`not_a_zip`, `corrupt_archive`, `unsafe_path`, `symlink`, \
            `no_files`, ...), the project's `[tool.ci]` cannot be used \
            (`invalid_project_config`), the image is not allowed (`image_not_allowed`), or the \
            git remote or ref is invalid or not allowed (`invalid`).",
            body = ErrorBody),
        (status = 429, description = "The caller has as many queued jobs as the operator \
            allows (`queue_full`, with `Retry-After`).", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    use axum::extract::FromRequest as _;
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let job = if json {
        let Json(body) = Json::<ci_common::git::GitJobRequest>::from_request(request, &state)
            .await
            .map_err(|rejection| {
                ApiError::BadRequest(format!(
                    "{}: send a job from git as JSON {{\"git\": {{\"url\": URL, \"ref\": \
                     REF}}, \"task\": TASK, \"args\": [...]}}, or upload the project as \
                     multipart/form-data with the zip in the field `file`",
                    rejection.body_text()
                ))
            })?;
        let detail = json!({
            "task": body.task.as_deref().unwrap_or(ci_common::api::DEFAULT_TASK),
            "source": "git",
            "git_url": audit::url_without_secrets(&body.git.url),
            "ref": body.git.reference(),
            "team": body.team,
        });
        super::create_git_job(&state, user.user_id, body, |job| {
            user.audit(Action::JobSubmit, format!("job {}", job.id))
                .detail(detail)
        })
        .await?
    } else {
        let multipart: Result<Multipart, MultipartRejection> =
            Multipart::from_request(request, &state).await;
        accept_upload(&state, &user, multipart).await?
    };
    let mut view = job.view();
    view.last_seq = Some(0);
    view.controller = controller_state(&state, job.status).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The query of `GET /api/v1/jobs`: a page of jobs.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Jobs on the page (default 50; more than 500 is 500).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<String>,
    /// Only jobs older than this one: the `next_before` of the previous page.
    #[param(value_type = Option<JobId>)]
    pub before: Option<String>,
    /// Only jobs in this state (`GET /api/v1/jobs` only).
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// Only jobs of this task (`GET /api/v1/jobs` only).
    pub task: Option<String>,
    /// Only jobs of this team, one the caller is a member of (`GET /api/v1/jobs` only).
    pub team: Option<String>,
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
        Ok(db_jobs::JobFilter {
            status,
            task,
            team: None,
        })
    }
}

pub fn query_error(err: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("bad query string: {}", err.body_text()))
}

/// `GET /api/v1/jobs?limit=N&before=<id>&status=S&task=T&team=NAME`: the jobs the caller sees
/// (theirs and their teams'), newest first, only those in state `S`, of task `T` and of team
/// `NAME` when given.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "One page of the jobs the caller sees (theirs and their \
            teams'), newest first.", body = JobList),
        (status = 404, description = "`team` names no team the caller is a member of \
            (`not_found`).", body = ErrorBody),
        (status = 400, description = "`limit`, `before` or `status` is not what it should be, \
            or the query string cannot be read (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let (limit, before) = params.parse(DEFAULT_LIMIT)?;
    let mut filter = params.filter()?;
    filter.team = super::member_team(&state, user.user_id, params.team.as_deref()).await?;
    let jobs = db_jobs::list_filtered(&state.db, user.user_id, limit, before, &filter).await?;
    let next_before = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|job| job.id))
        .flatten();
    Ok(Json(JobList {
        jobs: jobs.iter().map(db_jobs::Job::view).collect(),
        next_before,
    }))
}

/// `GET /api/v1/jobs/{id}`: one job, with the seq of its last event and its steps.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job, with `last_seq` and `steps`.", body = JobView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
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
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/retry",
    operation_id = "retry_job",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 201, description = "The new job, queued.", body = JobView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
        (status = 404, response = crate::openapi::JobNotFound),
        (status = 410, description = "The job's source is no longer kept \
            (`source_expired`): submit the project again.", body = ErrorBody),
        (status = 429, description = "The caller has as many queued jobs as the operator \
            allows (`queue_full`, with `Retry-After`).", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let policy = ci_common::db::policy::current(&state.db).await?;
    super::check_queue_quota(&state, &policy, user.user_id).await?;
    let mut tx = state.db.begin_write().await?;
    let job = db_jobs::retry(&mut tx, user.user_id, id)
        .await
        .map_err(|e| match e {
            db_jobs::RetryError::NotFound => ApiError::JobNotFound,
            db_jobs::RetryError::SourceExpired(id) => ApiError::SourceExpired(id),
            db_jobs::RetryError::Db(e) => e.into(),
        })?;
    let entry = user
        .audit(Action::JobRetry, format!("job {}", job.id))
        .detail(json!({ "retry_of": id, "task": job.task }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(job.id = %job.id, retry_of = %id, "job queued again");
    Ok((StatusCode::CREATED, Json(job.view())))
}

/// `?project=NAME` of a task's status.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskParams {
    /// Only jobs of this project (empty: any project).
    pub project: Option<String>,
}

/// `GET /api/v1/tasks/{name}?project=P`: the caller's latest job of the task (in project `P`
/// when given), as `GET /api/v1/jobs/{id}` shows it; 404 when there is none.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{name}",
    operation_id = "get_task_status",
    tag = "jobs",
    params(("name" = String, Path, description = "The task's name, e.g. `test`."), TaskParams),
    responses(
        (status = 200, description = "The caller's latest job of the task, with `last_seq` \
            and `steps`.", body = JobView),
        (status = 400, description = "The path or the query string cannot be read \
            (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "The caller has no job of this task (in this project) \
            (`job_not_found`).", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn task_status(
    State(state): State<AppState>,
    user: AuthUser,
    axum::extract::Path(task): axum::extract::Path<String>,
    params: Result<Query<TaskParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let project = params.project.as_deref().filter(|p| !p.is_empty());
    let job = db_jobs::latest_of_task(&state.db, user.user_id, &task, project)
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
    view.last_seq = Some(events::last_seq(&state.db, id).await?);
    let steps = ci_common::db::steps::list(&state.db, id).await?;
    view.steps = Some(steps.iter().map(|s| s.view()).collect());
    view.controller = controller_state(state, job.status).await?;
    Ok(view)
}

/// For a queued job: whether a controller is there to run it (see [`Lease::is_live`]).
///
/// [`Lease::is_live`]: ci_common::db::lease::Lease::is_live
async fn controller_state(
    state: &AppState,
    status: JobStatus,
) -> Result<Option<ControllerState>, ApiError> {
    if status != JobStatus::Queued {
        return Ok(None);
    }
    let lease = ci_common::db::lease::current(&state.db).await?;
    Ok(Some(ControllerState {
        running: lease
            .as_ref()
            .is_some_and(|l| l.is_live(chrono::Utc::now())),
        last_seen: lease.map(|l| l.heartbeat_at),
    }))
}

/// `POST /api/v1/jobs/{id}/cancel`: a queued job is cancelled at once, a running one is stopped
/// by the controller (202 either way); a job that already ended answers 409.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 202, description = "The job: `cancelled` if it was queued, else still \
            running with `cancel_requested`.", body = JobView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::CrossOrigin),
        (status = 404, response = crate::openapi::JobNotFound),
        (status = 409, description = "The job already ended (`job_finished`); the message \
            says how.", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
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
    let mut tx = state.db.begin_write().await?;
    let job = db_jobs::request_cancel(&mut tx, id, user.user_id)
        .await?
        .ok_or(ApiError::JobNotFound)?;
    if job.status.is_terminal() && job.status != JobStatus::Cancelled {
        return Err(ended(&job));
    }
    let entry = user
        .audit(Action::JobCancel, format!("job {id}"))
        .detail(json!({ "status": job.status }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(job.id = %id, status = %job.status, "cancel requested");
    let mut view = job.view();
    view.last_seq = Some(events::last_seq(&state.db, id).await?);
    Ok((StatusCode::ACCEPTED, Json(view)))
}
