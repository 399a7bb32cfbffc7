//! Handlers, one file per resource, and what they share: the job id in the path, the owned job,
//! and accepting an upload.

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use ci_common::api::DEFAULT_TASK;
use ci_common::db::audit::{self, Action, AuditEntry};
use ci_common::db::jobs::{self as db_jobs, Job};
use ci_common::JobId;
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

pub mod blobs;
pub mod compat;
pub mod events;
pub mod git_credentials;
pub mod health;
pub mod jobs;
pub mod log;
pub mod secrets;
pub mod session;
pub mod teams;
pub mod tests;
pub mod triggers;
pub mod webhooks;

/// The `{id}` of a job route. A malformed id is answered like a missing job (404).
pub struct JobPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::JobNotFound)?;
        id.parse().map(JobPath).map_err(|_| ApiError::JobNotFound)
    }
}

/// The caller's job, or 404 whether it is missing or someone else's.
pub async fn owned_job(state: &AppState, user: &AuthUser, id: JobId) -> Result<Job, ApiError> {
    db_jobs::get_for_user(&state.db, id, user.user_id)
        .await?
        .ok_or(ApiError::JobNotFound)
}

const TASK_MAX_LEN: usize = 64;
/// Most extra pytest arguments of a job, and the longest one (bytes).
const MAX_ARGS: usize = 64;
const ARG_MAX_LEN: usize = 4096;
/// The longest image name (bytes).
const IMAGE_MAX_LEN: usize = 256;
/// Longest `project`/`folder` field, in bytes (names are checked by
/// [`ci_common::project::check_project_name`]).
const NAME_MAX_LEN: usize = 400;

/// Reads one small text field of a multipart upload, at most `max` bytes of UTF-8.
async fn text_field(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
    invalid: impl Fn() -> ApiError,
    field_error: impl Fn(MultipartError) -> ApiError,
) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(&field_error)? {
        text.extend_from_slice(&chunk);
        if text.len() > max {
            return Err(invalid());
        }
    }
    String::from_utf8(text).map_err(|_| invalid())
}

/// The fields of an upload (`POST /api/v1/jobs`, multipart/form-data), as [`accept_upload`]
/// reads them: only `file` is required, unknown fields are ignored. For the API's
/// documentation: the fields are read as they stream in, never into this.
#[derive(utoipa::ToSchema)]
#[schema(
    description = "The fields of an upload: only `file` is required, unknown fields are \
    ignored."
)]
pub struct UploadForm {
    /// The project as a zip archive, paths relative to its folder.
    #[schema(value_type = String, format = Binary, content_media_type = "application/zip")]
    pub file: Vec<u8>,
    /// The task to run (default `test`): letters, digits, `-`, `_`, `.` and `:`.
    #[schema(
        nullable = false,
        max_length = 64,
        pattern = r"^\s*[A-Za-z0-9._:-]*\s*$"
    )]
    pub task: Option<String>,
    /// The image to run in, instead of the project's or the controller's default (e.g.
    /// `python:3.12-slim`); the operator's policy must allow it.
    #[schema(
        nullable = false,
        max_length = 256,
        pattern = r"^\s*[^\s\u0000-\u001f\u007f-\u009f]*\s*$"
    )]
    pub image: Option<String>,
    /// The job's arguments, one field each: pytest's for `test`, the task's parameters
    /// otherwise (at most 64, of up to 4096 bytes, without NUL).
    #[schema(required = false, max_items = 64)]
    pub arg: Vec<String>,
    /// How many times to run failed tests again (up to the operator's limit).
    #[schema(nullable = false, minimum = 0)]
    pub retries: Option<u32>,
    /// What a flaky test (failed, then passed) makes of the job: `pass` or `fail`.
    #[schema(nullable = false, pattern = "^(pass|fail)$")]
    pub flaky: Option<String>,
    /// The project's name, instead of `[tool.ci] project`, `[project].name` or the folder's: 1 to
    /// 100 characters without control characters (surrounding spaces are left out).
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*\S[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub project: Option<String>,
    /// The name of the folder the project was submitted from (the last default of its name;
    /// one that is not a valid project name is ignored), up to 400 bytes.
    #[schema(nullable = false)]
    pub folder: Option<String>,
    /// `false`: neither use nor fill the dependency cache.
    #[schema(nullable = false)]
    pub cache: Option<bool>,
    /// The team to submit the job to (the caller must be a member): every member sees it, and
    /// it uses the team's dependency cache.
    #[schema(nullable = false, min_length = 1, max_length = 64)]
    pub team: Option<String>,
}

/// Accepts an upload as `read_upload` does, and counts it: the archive's size once read, and a
/// refusal under its error code.
pub async fn accept_upload(
    state: &AppState,
    user: &AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Job, ApiError> {
    let accepted = read_upload(state, user, multipart).await;
    if let Err(err) = &accepted {
        state.metrics.upload_rejected(err.code());
    }
    accepted
}

/// Reads a multipart upload (`file`; optional `task`, `image`, repeated `arg`, `retries`,
/// `flaky` (`pass` or `fail`), `project`, `folder` (the name of the folder the project was
/// submitted from), `cache` (`false`: no dependency cache) and `team`), validates the archive, the project's `[tool.ci]`, the image and the retries
/// against the operator's policy, and creates the job with it in one transaction. Nothing is
/// stored when anything is wrong.
async fn read_upload(
    state: &AppState,
    user: &AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Job, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send the upload as multipart/form-data with the zip in the field `file` \
             (e.g. curl -F file=@project.zip)",
            rejection.body_text()
        ))
    })?;
    let max = state.config.max_upload_bytes;
    let too_large = || {
        ApiError::TooLarge(format!(
            "the upload is larger than the limit of {max} bytes: leave out large or generated \
             files (virtualenvs, caches, data sets)"
        ))
    };
    let field_error = |err: MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(format!(
                "the multipart body is malformed ({}): send the zip in the field `file`",
                err.body_text()
            ))
        }
    };
    let mut archive: Option<Vec<u8>> = None;
    let mut task: Option<String> = None;
    let mut image: Option<String> = None;
    let mut args: Vec<String> = Vec::new();
    let mut team: Option<String> = None;
    let mut asked = ci_common::project::Requested::default();
    while let Some(mut field) = multipart.next_field().await.map_err(field_error)? {
        match field.name() {
            Some("file") => {
                if archive.is_some() {
                    return Err(ApiError::BadRequest(
                        "more than one `file` field: upload one zip archive per job".into(),
                    ));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(field_error)? {
                    if (bytes.len() + chunk.len()) as u64 > max {
                        drop(bytes);
                        let rest_of_field =
                            async { while let Ok(Some(_)) = field.chunk().await {} };
                        let _ = tokio::time::timeout(DRAIN_TIME, rest_of_field).await;
                        drop(field);
                        drain(&mut multipart).await;
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                state.metrics.upload_read(bytes.len());
                archive = Some(bytes);
            }
            Some("task") => {
                task = Some(text_field(&mut field, TASK_MAX_LEN, invalid_task, field_error).await?);
            }
            Some("image") => {
                let invalid = || {
                    ApiError::Invalid(format!(
                        "invalid `image`: give an image name of up to {IMAGE_MAX_LEN} bytes, \
                         e.g. python:3.12-slim"
                    ))
                };
                let text = text_field(&mut field, IMAGE_MAX_LEN, invalid, field_error).await?;
                let text = text.trim();
                if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid());
                }
                image = (!text.is_empty()).then(|| text.to_owned());
            }
            Some("arg") => {
                let text = text_field(&mut field, ARG_MAX_LEN, invalid_arg, field_error).await?;
                if args.len() >= MAX_ARGS || text.contains('\0') {
                    return Err(invalid_arg());
                }
                args.push(text);
            }
            Some("retries") => {
                let invalid = || {
                    ApiError::Invalid(
                        "invalid `retries`: give how many times to run failed tests again, e.g. 2"
                            .into(),
                    )
                };
                let text = text_field(&mut field, 16, invalid, field_error).await?;
                asked.retries = Some(text.trim().parse().map_err(|_| invalid())?);
            }
            Some("flaky") => {
                let invalid = || {
                    ApiError::Invalid(
                        "invalid `flaky`: give \"pass\" (a flaky test passes the job) or \"fail\""
                            .into(),
                    )
                };
                let text = text_field(&mut field, 16, invalid, field_error).await?;
                asked.flaky = Some(text.trim().parse().map_err(|_| invalid())?);
            }
            Some("cache") => {
                let invalid = || {
                    ApiError::Invalid(
                        "invalid `cache`: give \"false\" to neither use nor fill the dependency \
                         cache, or leave it out"
                            .into(),
                    )
                };
                let text = text_field(&mut field, 16, invalid, field_error).await?;
                asked.no_cache = match text.trim() {
                    "false" => true,
                    "true" => false,
                    _ => return Err(invalid()),
                };
            }
            Some(name @ ("project" | "folder")) => {
                let is_project = name == "project";
                let invalid = move || {
                    ApiError::Invalid(format!(
                        "invalid `{}`: give a name of 1 to {} characters without control characters",
                        if is_project { "project" } else { "folder" },
                        ci_common::project::PROJECT_NAME_MAX_CHARS
                    ))
                };
                let text = text_field(&mut field, NAME_MAX_LEN, invalid, field_error).await?;
                let text = text.trim().to_owned();
                if is_project {
                    ci_common::project::check_project_name(&text).map_err(ApiError::Invalid)?;
                    asked.project = Some(text);
                } else {
                    asked.folder = Some(text);
                }
            }
            Some("team") => {
                let invalid = || {
                    ApiError::Invalid(format!(
                        "invalid `team`: a team's name has at most {} characters",
                        ci_common::db::teams::NAME_MAX_LEN
                    ))
                };
                let max = ci_common::db::teams::NAME_MAX_LEN;
                team = Some(text_field(&mut field, max, invalid, field_error).await?);
            }
            // Unknown fields are skipped, as the original system did.
            _ => {}
        }
    }
    let Some(archive) = archive else {
        return Err(ApiError::BadRequest(
            "the upload has no `file` field: send the project zip in the multipart field `file` \
             (e.g. curl -F file=@project.zip)"
                .into(),
        ));
    };
    let task = task_name(task)?;
    let team_id = member_team(state, user.user_id, team.as_deref()).await?;
    let policy = ci_common::db::policy::current(&state.db).await?;
    check_queue_quota(state, &policy, user.user_id).await?;
    let limits = state.config.limits(&policy);
    let (archive, checked) = tokio::task::spawn_blocking(move || {
        let checked = crate::upload::validate(&archive, &limits).map(|summary| {
            let root = ci_common::archive::root_files(&archive).unwrap_or_default();
            (summary, root)
        });
        (archive, checked)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("validating an upload")))?;
    let (summary, root) = checked?;
    let project = ci_common::project::Project::read(&root)?;
    // A job of a task the project does not have would fail in the controller.
    ci_common::tasks::check_task(&project, &task).map_err(ApiError::Invalid)?;
    // The command line wins over the project's configuration.
    let image = image.or(project.ci.image.clone());
    if let Some(image) = &image {
        policy.check_image(image)?;
    }
    // The images the job's tasks name are the operator's to allow too.
    for name in ci_common::tasks::pipeline(&project.ci.tasks, &task).map_err(ApiError::Invalid)? {
        if let Some(image) = project.ci.tasks.get(&name).and_then(|t| t.image.as_deref()) {
            policy.check_image(image)?;
        }
    }
    let options = project
        .job_options(&asked, policy.max_retries)
        .map_err(ApiError::Invalid)?;
    let concurrency_key =
        ci_common::tasks::concurrency_key(&project, &task, options.project.as_deref());
    let mut tx = state.db.begin_write().await?;
    let job = db_jobs::create_job(
        &mut tx,
        &db_jobs::NewJob {
            user_id: user.user_id,
            task: &task,
            image: image.as_deref(),
            args: &args,
            options: &options,
            concurrency_key: concurrency_key.as_deref(),
            source: db_jobs::NewSource::Archive(&archive),
            team_id,
        },
    )
    .await?;
    let entry = user
        .audit(Action::JobSubmit, format!("job {}", job.id))
        .detail(json!({
            "task": task,
            "source": "upload",
            "bytes": archive.len(),
            "project": options.project,
            "team": team.as_deref().map(str::trim).filter(|t| !t.is_empty()),
        }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(
        job.id = %job.id,
        bytes = archive.len(),
        files = summary.files,
        unpacked = summary.unpacked_bytes,
        "job queued"
    );
    Ok(job)
}

/// Reads (and drops) the rest of a refused upload, within the body limit and a few seconds, so
/// that the client, which is usually still sending, reads the answer instead of a reset
/// connection.
async fn drain(multipart: &mut Multipart) {
    let rest = async {
        while let Ok(Some(mut next)) = multipart.next_field().await {
            while let Ok(Some(_)) = next.chunk().await {}
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, rest).await;
}

const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Creates a job from git (`POST /api/v1/jobs` with JSON): checks the remote's URL and ref,
/// the task and arguments, and the remote against the operator's `--git-allow` rules (resolving
/// its host: an address on a private range must be allowed by name), then queues the job with
/// the audit row `audit` makes of it, in one transaction. Its project is fetched by its first
/// step; the task is checked against the project then.
pub async fn create_git_job(
    state: &AppState,
    user_id: ci_common::UserId,
    request: ci_common::git::GitJobRequest,
    audit: impl FnOnce(&Job) -> AuditEntry,
) -> Result<Job, ApiError> {
    let git = &request.git;
    let task = task_name(request.task)?;
    if request.args.len() > MAX_ARGS
        || request
            .args
            .iter()
            .any(|a| a.len() > ARG_MAX_LEN || a.contains('\0'))
    {
        return Err(invalid_arg());
    }
    let team_id = member_team(state, user_id, request.team.as_deref()).await?;
    let policy = check_git_source(state, git).await?;
    check_queue_quota(state, &policy, user_id).await?;
    let git_ref = git.reference();
    let mut tx = state.db.begin_write().await?;
    let job = db_jobs::create_job(
        &mut tx,
        &db_jobs::NewJob {
            user_id,
            task: &task,
            image: None,
            args: &request.args,
            options: &ci_common::project::JobOptions::default(),
            concurrency_key: None,
            source: db_jobs::NewSource::Git {
                url: &git.url,
                git_ref,
            },
            team_id,
        },
    )
    .await?;
    audit::record(&mut tx, &audit(&job)).await?;
    tx.commit().await?;
    tracing::info!(job.id = %job.id, git.url = %git.url, git.r#ref = git_ref, "job from git queued");
    Ok(job)
}

/// Checks a git source: the URL's text, the ref, and the remote against the operator's
/// `--git-allow` rules (resolving its host). Returns the operator's policy it read.
pub async fn check_git_source(
    state: &AppState,
    git: &ci_common::git::GitSource,
) -> Result<ci_common::policy::Policy, ApiError> {
    ci_common::git::check_url_text(&git.url).map_err(ApiError::Invalid)?;
    ci_common::git::check_ref(git.reference()).map_err(ApiError::Invalid)?;
    let policy = ci_common::db::policy::current(&state.db).await?;
    let rules = policy
        .git_allowlist()
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("the published policy")))?;
    rules
        .check(&git.url)
        .await
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(policy)
}

/// The team a job is submitted to: `None` for none (or a blank name); the team of that name if
/// `user_id` is one of its members; a 404 otherwise (a team the user is not in is not shown to
/// exist).
pub async fn member_team(
    state: &AppState,
    user_id: ci_common::UserId,
    name: Option<&str>,
) -> Result<Option<ci_common::TeamId>, ApiError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    match ci_common::db::teams::membership(&state.db, user_id, name).await? {
        Some(team) => Ok(Some(team.id)),
        None => Err(ApiError::NotFound(format!(
            "you are not a member of a team named {name:?}: `ci teams` lists yours (an \
             administrator adds members with `ci-admin team add-member`)"
        ))),
    }
}

/// Refuses a new queued job of `user_id` past the operator's `--max-queued-per-user` (429
/// `queue_full`, to try again once some have started).
pub async fn check_queue_quota(
    state: &AppState,
    policy: &ci_common::policy::Policy,
    user_id: ci_common::UserId,
) -> Result<(), ApiError> {
    let max = policy.max_queued_per_user;
    if max == 0 {
        return Ok(());
    }
    let queued = db_jobs::count_queued(&state.db, user_id).await?;
    if queued as u64 >= max {
        return Err(ApiError::RateLimited {
            code: "queue_full",
            message: format!(
                "you have {queued} queued jobs, the most this service queues for one user \
                 (ci-controller --max-queued-per-user {max}): wait for some to start, or cancel \
                 some (`ci list` shows them)"
            ),
            retry_after_secs: 10,
        });
    }
    Ok(())
}

/// The task a job asks for, checked: [`DEFAULT_TASK`] when it names none.
fn task_name(task: Option<String>) -> Result<String, ApiError> {
    let task = task
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| DEFAULT_TASK.to_owned());
    if task.len() > TASK_MAX_LEN
        || !task
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(invalid_task());
    }
    Ok(task)
}

fn invalid_arg() -> ApiError {
    ApiError::Invalid(format!(
        "invalid `arg`: at most {MAX_ARGS} pytest arguments of up to {ARG_MAX_LEN} bytes each, \
         without NUL bytes"
    ))
}

fn invalid_task() -> ApiError {
    ApiError::Invalid(format!(
        "invalid `task`: use up to {TASK_MAX_LEN} letters, digits, `-`, `_`, `.` or `:` \
         (or leave it out for \"{DEFAULT_TASK}\")"
    ))
}
