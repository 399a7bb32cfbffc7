//! Trigger tokens (`/api/v1/triggers`) and what they start: `POST /api/v1/trigger/{token}`
//! (another system, no API key) and `POST /api/v1/hooks/{token}` (a signed GitHub- or
//! Gitea-style push webhook). Both start the trigger's task on its git source as the token's
//! owner, through the same path as `POST /api/v1/jobs` with JSON ([`super::create_git_job`]).
//!
//! Requests with a token are rate-limited per token, in each replica's memory
//! ([`TOKEN_RATE_PER_MINUTE`], bursts of [`TOKEN_BURST`]).

use std::num::NonZeroU32;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ci_common::db::audit::{self, Action, Actor, Outcome};
use ci_common::db::triggers::{self as db_triggers, NewTrigger, Trigger, TriggerKind};
use ci_common::db::users;
use ci_common::git::{GitJobRequest, GitSource};
use ci_common::JobId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{AuthUser, ClientAddr};
use crate::error::ApiError;
use crate::AppState;

/// Requests one token may make a minute, per replica.
pub const TOKEN_RATE_PER_MINUTE: u32 = 30;
/// Requests one token may make at once before the rate applies.
pub const TOKEN_BURST: u32 = 10;

static LIMITER: LazyLock<DefaultKeyedRateLimiter<String>> = LazyLock::new(|| {
    RateLimiter::keyed(
        Quota::per_minute(NonZeroU32::new(TOKEN_RATE_PER_MINUTE).expect("not zero"))
            .allow_burst(NonZeroU32::new(TOKEN_BURST).expect("not zero")),
    )
});

/// The body of `POST /api/v1/triggers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTriggerRequest {
    /// `run` (default): started by `POST /api/v1/trigger/{token}`; `push`: by a signed push
    /// webhook at `POST /api/v1/hooks/{token}`.
    #[serde(default)]
    pub kind: Option<TriggerKind>,
    pub git: GitSource,
    /// The task its jobs run (default `test`).
    #[serde(default)]
    pub task: Option<String>,
}

/// A trigger just created: its token (and a push trigger's secret) are shown here only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedTrigger {
    pub trigger: Trigger,
    /// The token, in the path of `url`. Not shown again.
    pub token: String,
    /// A push trigger's HMAC-SHA256 secret, for the webhook's settings. Not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Where to send requests with the token: `/api/v1/trigger/{token}` or
    /// `/api/v1/hooks/{token}`.
    pub url: String,
}

/// `GET /api/v1/triggers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerList {
    pub triggers: Vec<Trigger>,
}

/// The optional body of `POST /api/v1/trigger/{token}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Another ref than the trigger's.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// Arguments of the task's last command.
    #[serde(default)]
    pub args: Vec<String>,
}

/// A job a token started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Started {
    pub job_id: JobId,
    /// The job in the API: `/api/v1/jobs/{id}`.
    pub url: String,
}

/// What a push webhook did when it started nothing (a push to another branch, a deleted
/// branch, a ping).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ignored {
    pub ignored: String,
}

/// `POST /api/v1/triggers`: a new trigger token bound to a task and a git source (checked
/// against the operator's `--git-allow` rules now, and again by each job).
#[utoipa::path(
    post,
    path = "/api/v1/triggers",
    operation_id = "create_trigger",
    tag = "triggers",
    request_body = NewTriggerRequest,
    responses(
        (status = 201, description = "The trigger, with its token (and secret) shown once.", body = CreatedTrigger),
        (status = 400, description = "Not the JSON asked for (`bad_request`).", body = ci_common::api::ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 422, description = "An invalid or refused remote, ref or task (`invalid`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    body: Result<Json<NewTriggerRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedTrigger>), ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "{}: send {{\"kind\": \"run\" or \"push\", \"git\": {{\"url\": URL, \"ref\": REF}}, \
             \"task\": TASK}}",
            rejection.body_text()
        ))
    })?;
    let task = super::task_name(body.task)?;
    super::check_git_source(&state, &body.git).await?;
    let kind = body.kind.unwrap_or(TriggerKind::Run);
    let mut tx = state.db.begin_write().await?;
    let created = db_triggers::create(
        &mut tx,
        &NewTrigger {
            user_id: user.user_id,
            kind,
            task: &task,
            git_url: &body.git.url,
            git_ref: body.git.git_ref.as_deref(),
        },
    )
    .await?;
    let entry = user
        .audit(
            Action::TriggerCreate,
            format!("trigger {}", created.trigger.id),
        )
        .detail(json!({
            "kind": kind,
            "task": task,
            "git_url": audit::url_without_secrets(&body.git.url),
            "ref": body.git.git_ref,
        }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    let path = match kind {
        TriggerKind::Run => "trigger",
        TriggerKind::Push => "hooks",
    };
    tracing::info!(trigger = %created.trigger.id, ?kind, "trigger created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedTrigger {
            url: format!("{}/{path}/{}", crate::API_PREFIX, created.token),
            secret: created.trigger.secret.clone(),
            trigger: created.trigger,
            token: created.token,
        }),
    ))
}

/// `GET /api/v1/triggers`: the caller's triggers (revoked ones too), never their tokens.
#[utoipa::path(
    get,
    path = "/api/v1/triggers",
    operation_id = "list_triggers",
    tag = "triggers",
    responses(
        (status = 200, description = "The caller's triggers, oldest first.", body = TriggerList),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<TriggerList>, ApiError> {
    Ok(Json(TriggerList {
        triggers: db_triggers::list(&state.db, user.user_id).await?,
    }))
}

/// `DELETE /api/v1/triggers/{id}`: revokes one of the caller's triggers; its token starts
/// nothing from then on.
#[utoipa::path(
    delete,
    path = "/api/v1/triggers/{id}",
    operation_id = "revoke_trigger",
    tag = "triggers",
    params(("id" = String, Path, description = "The trigger's id.")),
    responses(
        (status = 200, description = "The trigger, revoked.", body = Trigger),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "The caller has no such trigger (`not_found`).", body = ci_common::api::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Trigger>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let trigger = db_triggers::revoke(&mut tx, user.user_id, &id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("no trigger {id}: `ci triggers list` shows yours"))
        })?;
    let entry = user
        .audit(Action::TriggerRevoke, format!("trigger {}", trigger.id))
        .detail(json!({ "kind": trigger.kind, "task": trigger.task }));
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Json(trigger))
}

/// The active trigger of `token`, within its rate.
async fn trigger_of(state: &AppState, token: &str) -> Result<Trigger, ApiError> {
    if LIMITER.check_key(&token.to_owned()).is_err() {
        return Err(ApiError::RateLimited {
            code: "rate_limited",
            message: format!(
                "too many requests with this trigger token: at most {TOKEN_RATE_PER_MINUTE} a \
                 minute (bursts of {TOKEN_BURST})"
            ),
            retry_after_secs: (60 / TOKEN_RATE_PER_MINUTE).max(1).into(),
        });
    }
    db_triggers::use_token(&state.db, token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized {
            code: "unauthorized",
            message: "unknown or revoked trigger token: `ci triggers list` shows your \
                          triggers, `ci triggers create` makes a new one"
                .into(),
        })
}

/// The trigger's owner, as its audit rows name the actor of what its token does.
async fn owner(state: &AppState, trigger: &Trigger, source: &str) -> Result<Actor, ApiError> {
    let name = users::get(&state.db, trigger.user_id)
        .await?
        .map(|u| u.name)
        .unwrap_or_else(|| audit::UNKNOWN_ACTOR.to_owned());
    Ok(Actor::user(&name, trigger.user_id, source))
}

async fn start(
    state: &AppState,
    source: &str,
    trigger: &Trigger,
    git_ref: Option<String>,
    args: Vec<String>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let actor = owner(state, trigger, source).await?;
    let git_ref = git_ref.or_else(|| trigger.git_ref.clone());
    let detail = json!({
        "kind": trigger.kind,
        "task": trigger.task,
        "git_url": audit::url_without_secrets(&trigger.git_url),
        "ref": git_ref,
    });
    let job = super::create_git_job(
        state,
        trigger.user_id,
        GitJobRequest {
            git: GitSource {
                url: trigger.git_url.clone(),
                git_ref,
            },
            task: Some(trigger.task.clone()),
            args,
            team: None,
        },
        |job| {
            let mut detail = detail;
            detail["job_id"] = json!(job.id);
            actor
                .entry(Action::TriggerRun, format!("trigger {}", trigger.id))
                .detail(detail)
        },
    )
    .await?;
    tracing::info!(trigger = %trigger.id, job.id = %job.id, "job started by a trigger");
    Ok((
        StatusCode::CREATED,
        Json(Started {
            job_id: job.id,
            url: format!("{}/jobs/{}", crate::API_PREFIX, job.id),
        }),
    ))
}

/// `POST /api/v1/trigger/{token}`: starts the trigger's task as its owner; the optional JSON
/// body names another ref and the task's arguments. No API key: the token is the credential.
#[utoipa::path(
    post,
    path = "/api/v1/trigger/{token}",
    operation_id = "run_trigger",
    tag = "triggers",
    params(("token" = String, Path, description = "The trigger token (`cit_…`).")),
    request_body(content = Option<RunRequest>, description = "Optional: another ref, arguments."),
    responses(
        (status = 201, description = "The job started.", body = Started),
        (status = 400, description = "A body that is not the JSON asked for (`bad_request`).", body = ci_common::api::ErrorBody),
        (status = 401, description = "An unknown or revoked token (`unauthorized`).", body = ci_common::api::ErrorBody),
        (status = 422, description = "An invalid ref or arguments, or a remote the rules now refuse (`invalid`).", body = ci_common::api::ErrorBody),
        (status = 429, description = "Past the token's rate (`rate_limited`, with `Retry-After`).", body = ci_common::api::ErrorBody),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let request: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not the JSON asked for ({e}): send nothing, or {{\"ref\": REF, \
                 \"args\": [...]}}"
            ))
        })?
    };
    let trigger = trigger_of(&state, &token).await?;
    start(&state, &source, &trigger, request.git_ref, request.args).await
}

/// The fields of a GitHub or Gitea push event that matter here.
#[derive(Debug, Deserialize)]
struct PushEvent {
    /// `refs/heads/main`, `refs/tags/v1`.
    #[serde(rename = "ref")]
    git_ref: String,
    /// The commit the ref points to after the push (zeros: the ref was deleted).
    after: String,
}

/// Checks `X-Hub-Signature-256: sha256=HEX` (GitHub, Gitea) or `X-Gitea-Signature: HEX`:
/// HMAC-SHA256 of the body with the trigger's secret, compared in constant time.
fn signature_ok(headers: &HeaderMap, secret: &str, body: &[u8]) -> bool {
    let given = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .or_else(|| {
            headers
                .get("x-gitea-signature")
                .and_then(|v| v.to_str().ok())
        });
    let Some(given) = given.and_then(|hex| ci_common::keys::unhex(hex.trim())) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// `POST /api/v1/hooks/{token}`: a push webhook (GitHub or Gitea style) for a `push` trigger.
/// The body's signature is checked with the trigger's secret; a push to the trigger's branch (or
/// any push, for a trigger without a ref) starts its task at the pushed commit.
#[utoipa::path(
    post,
    path = "/api/v1/hooks/{token}",
    operation_id = "push_hook",
    tag = "triggers",
    params(("token" = String, Path, description = "The push trigger's token (`cit_…`).")),
    request_body(content = String, content_type = "application/json", description = "The push event, as GitHub or Gitea sends it (`ref`, `after`)."),
    responses(
        (status = 201, description = "The job started at the pushed commit.", body = Started),
        (status = 202, description = "Nothing started: a ping, a push to another ref or a deleted ref.", body = Ignored),
        (status = 400, description = "Not a push event (`bad_request`).", body = ci_common::api::ErrorBody),
        (status = 401, description = "An unknown or revoked token, not a push trigger, or a missing or wrong signature (`unauthorized`).", body = ci_common::api::ErrorBody),
        (status = 429, description = "Past the token's rate (`rate_limited`, with `Retry-After`).", body = ci_common::api::ErrorBody),
    )
)]
pub async fn push(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let trigger = trigger_of(&state, &token).await?;
    let secret = match (&trigger.kind, &trigger.secret) {
        (TriggerKind::Push, Some(secret)) => secret,
        _ => {
            return Err(ApiError::Unauthorized {
                code: "unauthorized",
                message: "this trigger token is not a push trigger: send its requests to \
                          /api/v1/trigger/{token}, or create one with `ci triggers create --push`"
                    .into(),
            })
        }
    };
    if !signature_ok(&headers, secret, &body) {
        // Only who holds the token gets this far: recorded, as a refused sign-in is.
        let entry = owner(&state, &trigger, &source)
            .await?
            .entry(Action::TriggerRun, format!("trigger {}", trigger.id))
            .outcome(Outcome::Denied)
            .detail(json!({ "kind": trigger.kind, "code": "bad_signature" }));
        audit::record(&state.db, &entry).await?;
        return Err(ApiError::Unauthorized {
            code: "bad_signature",
            message: "the webhook's signature does not match: set the trigger's secret (shown \
                      when it was created) as the webhook's secret, with content type \
                      application/json"
                .into(),
        });
    }
    let event = headers
        .get("x-github-event")
        .or_else(|| headers.get("x-gitea-event"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push");
    if event != "push" {
        return Ok((
            StatusCode::ACCEPTED,
            Json(Ignored {
                ignored: format!("a {event} event starts nothing"),
            }),
        )
            .into_response());
    }
    let push: PushEvent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "not a push event ({e}): the body must have `ref` and `after`"
        ))
    })?;
    let ignored =
        |why: String| Ok((StatusCode::ACCEPTED, Json(Ignored { ignored: why })).into_response());
    if push.after.chars().all(|c| c == '0') {
        return ignored(format!("{} was deleted", push.git_ref));
    }
    if let Some(bound) = &trigger.git_ref {
        let matches = push.git_ref == *bound
            || push.git_ref == format!("refs/heads/{bound}")
            || push.git_ref == format!("refs/tags/{bound}");
        if !matches {
            return ignored(format!(
                "a push to {}; this trigger runs on pushes to {bound}",
                push.git_ref
            ));
        }
    }
    Ok(
        start(&state, &source, &trigger, Some(push.after), Vec::new())
            .await?
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_both_header_styles() {
        let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_x").unwrap();
        mac.update(body);
        let hex: String = ci_common::keys::hex(&mac.finalize().into_bytes());
        let mut github = HeaderMap::new();
        github.insert(
            "x-hub-signature-256",
            format!("sha256={hex}").parse().unwrap(),
        );
        assert!(signature_ok(&github, "whsec_x", body));
        assert!(!signature_ok(&github, "whsec_y", body));
        assert!(!signature_ok(&github, "whsec_x", b"{}"));
        let mut gitea = HeaderMap::new();
        gitea.insert("x-gitea-signature", hex.parse().unwrap());
        assert!(signature_ok(&gitea, "whsec_x", body));
        assert!(!signature_ok(&HeaderMap::new(), "whsec_x", body));
    }
}
