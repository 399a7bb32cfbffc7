//! `GET /api/v1/jobs/{id}/blobs` and `GET /api/v1/jobs/{id}/blobs/{*name}`: a job's stored blobs
//! (reports, artifacts), listed and streamed from the one blob store ([`ci_common::db::blobs`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ci_common::api::ErrorBody;
use ci_common::db::blobs::{self, BlobMeta, BlobReader};
use ci_common::tasks::ARTIFACTS_PREFIX;
use ci_common::JobId;
use serde::Serialize;

use super::{owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// The answer of `GET /api/v1/jobs/{id}/blobs`.
#[derive(Debug, Serialize)]
pub struct BlobList {
    /// By name.
    pub blobs: Vec<BlobMeta>,
}

/// `GET /api/v1/jobs/{id}/blobs`: the job's blobs, by name.
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<BlobList>, ApiError> {
    owned_job(&state, &user, id).await?;
    let blobs = blobs::list(&state.pool, id).await?;
    Ok(Json(BlobList { blobs }))
}

/// `GET /api/v1/jobs/{id}/blobs/{*name}`: one blob's bytes (see [`serve`]).
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path((id, name))) = path else {
        return Err(ApiError::JobNotFound);
    };
    serve(&state, &user, &id, &name).await
}

/// A job's artifacts as `GET /api/v1/jobs/{id}/artifacts` lists them.
#[derive(Debug, Serialize)]
pub struct ArtifactList {
    pub artifacts: Vec<Artifact>,
}

/// One artifact: its path in the project, size in bytes and SHA-256 (hex).
#[derive(Debug, Serialize)]
pub struct Artifact {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

/// `GET /api/v1/jobs/{id}/artifacts`: the files the job's steps kept (`artifacts` of its tasks).
pub async fn artifacts(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<ArtifactList>, ApiError> {
    owned_job(&state, &user, id).await?;
    let artifacts = blobs::list(&state.pool, id)
        .await?
        .into_iter()
        .filter_map(|meta| {
            let path = meta.name.strip_prefix(ARTIFACTS_PREFIX)?.to_owned();
            Some(Artifact {
                path,
                size: meta.size,
                sha256: meta.sha256,
            })
        })
        .collect();
    Ok(Json(ArtifactList { artifacts }))
}

/// `GET /api/v1/jobs/{id}/artifacts/{*path}`: one artifact's bytes (see [`serve`]).
pub async fn artifact(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path((id, path))) = path else {
        return Err(ApiError::JobNotFound);
    };
    serve(&state, &user, &id, &format!("{ARTIFACTS_PREFIX}{path}")).await
}

/// A blob of the caller's job, streamed chunk by chunk with its `Content-Type`,
/// `Content-Length` and an `ETag` of its SHA-256; 404 for another user's job or a missing blob.
async fn serve(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::JobNotFound)?;
    owned_job(state, user, id).await?;
    let Some(reader) = blobs::open(&state.pool, id, name).await? else {
        return Ok(blob_not_found(id, name));
    };
    let meta = reader.meta();
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static(blobs::DEFAULT_CONTENT_TYPE));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, HeaderValue::from(meta.size)),
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{}\"", meta.sha256))
                .expect("a hex digest is a header value"),
        ),
    ];
    Ok((headers, Body::from_stream(chunks(reader))).into_response())
}

/// The blob's chunks as a body stream; a failure ends it (and is logged: the client only sees
/// a short body).
fn chunks(
    reader: BlobReader,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, blobs::BlobError>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            Ok(None) => None,
            Err(err) => {
                let meta = reader.meta();
                let mut chain = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    chain.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                tracing::warn!(
                    job.id = %meta.job_id,
                    blob = meta.name,
                    error = chain,
                    "a blob's body ended early"
                );
                Some((Err(err), None))
            }
        }
    })
}

/// 404 in the one error shape, for a job that has no blob `name`.
fn blob_not_found(job: JobId, name: &str) -> Response {
    let message = format!(
        "job {job} has no blob named {name:?}: `GET /api/v1/jobs/{job}/blobs` lists the ones it has"
    );
    let body = ErrorBody {
        error: message.clone(),
        code: "blob_not_found".to_owned(),
        detail: Some(message),
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
