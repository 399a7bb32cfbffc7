//! `GET /api/v1/jobs/{id}/blobs` and `GET /api/v1/jobs/{id}/blobs/{*name}`: a job's stored blobs
//! (reports, artifacts), listed and streamed from the one blob store ([`ci_common::db::blobs`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlobList {
    /// By name.
    pub blobs: Vec<BlobMeta>,
}

/// `GET /api/v1/jobs/{id}/blobs`: the job's blobs, by name.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/blobs",
    operation_id = "list_blobs",
    tag = "blobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job's blobs (raw test reports, artifacts), by name.",
            body = BlobList,
            links(("GetBlob" = (
                operation_id = "get_blob",
                parameters(("id" = "$request.path.id"), ("name" = "$response.body#/blobs/0/name")),
                description = "The bytes of the first blob."
            )))),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<BlobList>, ApiError> {
    owned_job(&state, &user, id).await?;
    let blobs = blobs::list(&state.db, id).await?;
    Ok(Json(BlobList { blobs }))
}

/// `GET /api/v1/jobs/{id}/blobs/{*name}`: one blob's bytes (see [`serve`]).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/blobs/{name}",
    operation_id = "get_blob",
    tag = "blobs",
    params(
        crate::openapi::JobIdParam,
        ("name" = String, Path, description = "The blob's name, `/` and all, e.g. \
            `reports/test.jsonl`."),
        crate::openapi::RangeHeader,
    ),
    responses(
        (status = 200, response = crate::openapi::BlobBytes),
        (status = 206, response = crate::openapi::BlobRange),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No such job for the caller (`job_not_found`), or the job \
            has no blob of this name (`blob_not_found`).", body = ErrorBody),
        (status = 416, response = crate::openapi::RangeNotSatisfiable),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path((id, name))) = path else {
        return Err(ApiError::JobNotFound);
    };
    serve(&state, &user, &id, &name, range_of(&headers)).await
}

/// A job's artifacts as `GET /api/v1/jobs/{id}/artifacts` lists them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<Artifact>,
}

/// One artifact: its path in the project, size in bytes and SHA-256 (hex).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Artifact {
    /// `/`-separated, relative to the project's folder, e.g. `dist/app.whl`.
    pub path: String,
    /// In bytes.
    pub size: i64,
    /// SHA-256 of the file, lower-case hex (64 characters).
    pub sha256: String,
}

/// `GET /api/v1/jobs/{id}/artifacts`: the files the job's steps kept (`artifacts` of its tasks).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/artifacts",
    operation_id = "list_artifacts",
    tag = "artifacts",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job's artifacts, by path.", body = ArtifactList,
            links(("GetArtifact" = (
                operation_id = "get_artifact",
                parameters(
                    ("id" = "$request.path.id"),
                    ("path" = "$response.body#/artifacts/0/path")
                ),
                description = "The bytes of the first artifact."
            )))),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn artifacts(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Json<ArtifactList>, ApiError> {
    owned_job(&state, &user, id).await?;
    let artifacts = blobs::list(&state.db, id)
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
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/artifacts/{path}",
    operation_id = "get_artifact",
    tag = "artifacts",
    params(
        crate::openapi::JobIdParam,
        ("path" = String, Path, description = "The artifact's path, `/` and all, as the list \
            gives it."),
        crate::openapi::RangeHeader,
    ),
    responses(
        (status = 200, response = crate::openapi::BlobBytes),
        (status = 206, response = crate::openapi::BlobRange),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "No such job for the caller (`job_not_found`), or the job \
            kept no artifact at this path (`blob_not_found`).", body = ErrorBody),
        (status = 416, response = crate::openapi::RangeNotSatisfiable),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn artifact(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path((id, path))) = path else {
        return Err(ApiError::JobNotFound);
    };
    serve(
        &state,
        &user,
        &id,
        &format!("{ARTIFACTS_PREFIX}{path}"),
        range_of(&headers),
    )
    .await
}

/// A blob of the caller's job, streamed chunk by chunk with its `Content-Type`,
/// `Content-Length` and an `ETag` of its SHA-256; one byte range of it (206, `Content-Range`)
/// when the request has a `Range` header (RFC 9110: one range; several, or one past the end, is
/// 416). 404 for another user's job or a missing blob.
async fn serve(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    name: &str,
    range: Option<&str>,
) -> Result<Response, ApiError> {
    let id: JobId = id.parse().map_err(|_| ApiError::JobNotFound)?;
    owned_job(state, user, id).await?;
    let Some(mut reader) = blobs::open(&state.db, id, name).await? else {
        return Ok(blob_not_found(id, name));
    };
    let meta = reader.meta().clone();
    let size = meta.size.max(0) as u64;
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static(blobs::DEFAULT_CONTENT_TYPE));
    let etag = HeaderValue::from_str(&format!("\"{}\"", meta.sha256))
        .expect("a hex digest is a header value");
    let accept = (header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let Some(range) = range else {
        let headers = [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(meta.size)),
            (header::ETAG, etag),
            accept,
        ];
        return Ok((headers, Body::from_stream(chunks(reader))).into_response());
    };
    let ranges = http_range_header::parse_range_header(range).and_then(|r| r.validate(size));
    match ranges.as_deref() {
        Ok([one]) => {
            let (start, end) = (*one.start(), *one.end());
            reader.range(start, end);
            let headers = [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_LENGTH, HeaderValue::from(end - start + 1)),
                (
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
                        .expect("numbers are a header value"),
                ),
                (header::ETAG, etag),
                accept,
            ];
            Ok((
                StatusCode::PARTIAL_CONTENT,
                headers,
                Body::from_stream(chunks(reader)),
            )
                .into_response())
        }
        _ => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("a header value"),
            )],
            Json(ErrorBody {
                error: format!(
                    "the range {range:?} is not one range within the {size} bytes of {name:?}: \
                     ask for one, e.g. `Range: bytes=0-1023`"
                ),
                code: "range_not_satisfiable".to_owned(),
                detail: None,
            }),
        )
            .into_response()),
    }
}

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

/// The request's `Range` header, if it has one.
fn range_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::RANGE).and_then(|v| v.to_str().ok())
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
