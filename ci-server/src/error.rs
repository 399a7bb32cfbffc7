//! The one error type of the HTTP API. Every error, including the framework's own (unknown
//! route, wrong method, malformed body), is answered with [`ErrorBody`] JSON.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ci_common::api::ErrorBody;
use ci_common::db::DbError;
use ci_common::JobStatus;

use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller could not be authenticated; the message says which part to fix.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// No such job for this user (another user's job looks exactly the same).
    #[error("no job with this id: check the id (`ci list` shows your jobs)")]
    JobNotFound,
    /// No such webhook for this user (another user's looks exactly the same).
    #[error("no webhook with this id: check the id (`ci webhooks list` shows yours)")]
    WebhookNotFound,
    /// A webhook's URL that the operator's rules (or the address it leads to) refuse.
    #[error("{0}")]
    WebhookRefused(String),
    #[error("no such endpoint: {0} (the API lives under /api/v1)")]
    RouteNotFound(String),
    /// Another missing thing of the caller's (a trigger); the message says where to look.
    #[error("{0}")]
    NotFound(String),
    /// A read-only key (or its session) asked to change something.
    #[error("{0}")]
    ReadOnlyKey(String),
    /// Something the operator has not turned on (stored git credentials without a secrets key).
    #[error("{0}")]
    Disabled(String),
    /// Past a rate; answered with `Retry-After` (seconds).
    #[error("{message}")]
    RateLimited {
        /// `rate_limited` (requests) or `queue_full` (queued jobs).
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    BadRequest(String),
    /// A state-changing request signed in by cookie that does not come from the server's own
    /// pages.
    #[error("{0}")]
    CrossOrigin(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Upload(#[from] UploadError),
    /// The job asks for an image the operator does not allow.
    #[error("{0}")]
    ImageNotAllowed(#[from] ci_common::policy::ImageNotAllowed),
    /// The project's `pyproject.toml` or its `[tool.ci]` cannot be used.
    #[error("{0}")]
    ProjectConfig(#[from] ci_common::project::ConfigError),
    #[error("job {job} already ended ({status}{}); there is nothing to cancel",
        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    AlreadyEnded {
        job: ci_common::JobId,
        status: JobStatus,
        reason: Option<String>,
    },
    /// `ci retry` of a job whose source is no longer kept.
    #[error(
        "the source of job {0} is no longer kept (sources are kept for ci-controller \
         --source-retain after their last use): submit the project again"
    )]
    SourceExpired(ci_common::JobId),
    #[error("{0}")]
    Unavailable(String),
    /// Anything that is the server's fault. The cause is logged, never sent.
    #[error("internal server error: the server log has the details")]
    Internal(anyhow::Error),
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        ApiError::Internal(anyhow::Error::new(err))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::JobNotFound
            | ApiError::WebhookNotFound
            | ApiError::RouteNotFound(_)
            | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Disabled(_) | ApiError::ReadOnlyKey(_) => StatusCode::FORBIDDEN,
            ApiError::WebhookRefused(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upload(err) if err.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upload(UploadError::Empty) => StatusCode::BAD_REQUEST,
            ApiError::Upload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ImageNotAllowed(_) | ApiError::ProjectConfig(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::AlreadyEnded { .. } => StatusCode::CONFLICT,
            ApiError::SourceExpired(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { code, .. } => code,
            ApiError::JobNotFound => "job_not_found",
            ApiError::WebhookNotFound => "webhook_not_found",
            ApiError::WebhookRefused(_) => "webhook_url_refused",
            ApiError::RouteNotFound(_) | ApiError::NotFound(_) => "not_found",
            ApiError::RateLimited { code, .. } => code,
            ApiError::Disabled(_) => "disabled",
            ApiError::ReadOnlyKey(_) => "read_only_key",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::CrossOrigin(_) => "cross_origin_request",
            ApiError::Invalid(_) => "invalid",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Upload(err) => err.code(),
            ApiError::ImageNotAllowed(_) => "image_not_allowed",
            ApiError::ProjectConfig(_) => "invalid_project_config",
            ApiError::AlreadyEnded { .. } => "job_finished",
            ApiError::SourceExpired(_) => "source_expired",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = self.to_string();
        ErrorBody {
            error: message.clone(),
            code: self.code().to_owned(),
            detail: Some(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if matches!(self, ApiError::Unauthorized { .. }) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ci\""),
            );
        }
        response
    }
}

/// The error body for a response that some layer produced without one (a timeout, a panic, a
/// framework rejection): keeps every error in the one JSON shape.
pub fn generic_body(status: StatusCode) -> ErrorBody {
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
            "timeout",
            "the request took too long; try again (a slow upload can take up to the upload time limit)",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "wrong Content-Type: uploads are multipart/form-data with the zip in field `file`",
        ),
        s if s.is_server_error() => ("internal", "internal server error: the server log has the details"),
        _ => ("bad_request", "the request could not be understood"),
    };
    ErrorBody {
        error: message.to_owned(),
        code: code.to_owned(),
        detail: Some(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn render(err: ApiError) -> (StatusCode, Option<HeaderValue>, ErrorBody) {
        let response = err.into_response();
        let status = response.status();
        let auth = response.headers().get(header::WWW_AUTHENTICATE).cloned();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, auth, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_render_as_the_shared_body_with_their_status() {
        let (status, auth, body) = render(ApiError::JobNotFound).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(auth.is_none());
        assert_eq!(body.code, "job_not_found");
        assert_eq!(body.detail.as_deref(), Some(body.error.as_str()));

        let (status, auth, body) = render(ApiError::Unauthorized {
            code: "missing_api_key",
            message: "send a key".into(),
        })
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(auth.unwrap(), "Bearer realm=\"ci\"");
        assert_eq!(body.error, "send a key");

        let (status, _, body) =
            render(UploadError::TooManyEntries { count: 5, limit: 2 }.into()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body.code, "too_many_entries");
        let (status, _, _) = render(UploadError::NoFiles.into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _, _) = render(UploadError::Empty.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let err = anyhow::anyhow!("secret table xyz is locked").context("loading a job");
        let (status, _, body) = render(ApiError::Internal(err)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.error.contains("xyz"), "{}", body.error);
        assert_eq!(body.code, "internal");
    }

    #[tokio::test]
    async fn a_finished_job_says_how_it_ended() {
        let err = ApiError::AlreadyEnded {
            job: ci_common::JobId::new(),
            status: JobStatus::Failed,
            reason: Some("tests failed".into()),
        };
        let (status, _, body) = render(err).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body.error.contains("already ended (failed: tests failed)"),
            "{}",
            body.error
        );
    }
}
