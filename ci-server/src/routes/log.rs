//! A job's log as text: by line range (`/log?from=&to=`), whole (`/log.txt`) and searched
//! (`/log/search?q=`). Line `n` is the job's event `n` (its `seq`: one event, one line), so a
//! line number is the same in the stream, these views and a `#L123` link.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ci_common::api::{ErrorBody, LogLine, LogMatches};
use ci_common::db::events::{self, EventRow};
use futures_util::stream;
use serde::Deserialize;

use super::jobs::query_error;
use super::{owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// Most lines one `GET /api/v1/jobs/{id}/log` answers.
pub const MAX_RANGE_LINES: i64 = 10_000;
/// Lines read from the database at a time for `log.txt`.
const RAW_PAGE: i64 = 10_000;
/// Most matches one search answers, and the default.
pub const MAX_MATCHES: i64 = 1_000;
const DEFAULT_MATCHES: i64 = 100;
/// The longest search text, in bytes.
const MAX_NEEDLE_BYTES: usize = 1_000;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// `?from=A&to=B` of a log range.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// The first line (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub from: Option<String>,
    /// The last line (default: 10,000 lines from `from`, at most that many); not before `from`.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub to: Option<String>,
}

/// `?q=TEXT&after=SEQ&limit=N` of a log search.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The text to look for (1 to 1000 bytes; ASCII letters in any case).
    #[param(required = true, value_type = String, min_length = 1, max_length = 1000)]
    pub q: Option<String>,
    /// Only lines after this one: the `next_after` of the previous page (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Most matches (default 100; more than 1000 is 1000).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<String>,
}

fn number(text: Option<&str>, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be a whole number of at least {min}, not {text:?}"
            ))),
        },
    }
}

/// One event as a line of text: never a line break inside it.
fn one_line(row: &EventRow) -> String {
    let line = row.line();
    if line.contains(['\n', '\r']) {
        line.replace("\r\n", " ").replace(['\n', '\r'], " ")
    } else {
        line
    }
}

/// `GET /api/v1/jobs/{id}/log?from=A&to=B`: lines `A` to `B` of the job's log (default from 1;
/// at most [`MAX_RANGE_LINES`], fewer at the end), as `text/plain; charset=utf-8`, each line
/// ended by `\n`: a log line or notice as written, other events as a short marker (see
/// [`EventRow::line`]). `X-Ci-Last-Seq` gives the job's last line so far.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log",
    operation_id = "get_log_range",
    tag = "log",
    params(crate::openapi::JobIdParam, RangeParams),
    responses(
        (status = 200, description = "The lines, each ended by `\\n` (UTF-8): a log line or \
            notice as written, other events as a short marker.", content_type = "text/plain",
            body = String, headers(
                ("X-Ci-Last-Seq" = i64, description = "The job's last line so far."),
                ("Cache-Control" = String, description = "`no-cache`"),
            )),
        (status = 400, description = "`from` or `to` is not a line number, `to` is before \
            `from`, or the query string cannot be read (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn range(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let from = number(params.from.as_deref(), "from", 1)?.unwrap_or(1);
    let last_wanted = from.saturating_add(MAX_RANGE_LINES - 1);
    let to = match number(params.to.as_deref(), "to", 1)? {
        Some(to) if to < from => {
            return Err(ApiError::BadRequest(format!(
                "`to` ({to}) must not be before `from` ({from})"
            )))
        }
        Some(to) => to.min(last_wanted),
        None => last_wanted,
    };
    owned_job(&state, &user, id).await?;
    let last_seq = events::last_seq(&state.db, id).await?;
    let rows = events::between(&state.db, id, from, to).await?;
    let mut body = String::with_capacity(rows.iter().map(|r| r.text.len() + 1).sum());
    for row in &rows {
        body.push_str(&one_line(row));
        body.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-ci-last-seq"),
                HeaderValue::from(last_seq),
            ),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/jobs/{id}/log.txt`: the whole raw log (the program's own lines, without notices
/// or markers), streamed from the database page by page, as a download named
/// `job-<id>.log`. A running job's log is what is stored so far.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log.txt",
    operation_id = "get_log_text",
    tag = "log",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The program's lines, each ended by `\\n` (UTF-8).",
            content_type = "text/plain", body = String, headers(
                ("Content-Disposition" = String, description = "`attachment; \
                    filename=\"job-<id>.log\"`"),
            )),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn raw(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    owned_job(&state, &user, id).await?;
    let pool = state.db.clone();
    let pages = stream::try_unfold(Some(0_i64), move |after| {
        let pool = pool.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let lines = events::log_lines_after(&pool, id, after, RAW_PAGE).await?;
            let next = (lines.len() as i64 == RAW_PAGE)
                .then(|| lines.last().map(|(seq, _)| *seq))
                .flatten();
            if lines.is_empty() {
                return Ok(None);
            }
            let mut chunk = String::with_capacity(lines.iter().map(|(_, t)| t.len() + 1).sum());
            for (_, text) in &lines {
                chunk.push_str(text);
                chunk.push('\n');
            }
            Ok::<_, ci_common::db::DbError>(Some((Bytes::from(chunk), next)))
        }
    });
    let disposition = format!("attachment; filename=\"job-{id}.log\"");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).expect("a job id is ASCII"),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// `GET /api/v1/jobs/{id}/log/search?q=TEXT&after=SEQ&limit=N`: the lines after line `SEQ`
/// (default: from the start) whose text contains `TEXT` (ignoring the case of ASCII letters),
/// at most `N` (default 100, at most [`MAX_MATCHES`]), as [`LogMatches`]; the whole log is
/// searched, not only what a page shows.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log/search",
    operation_id = "search_log",
    tag = "log",
    params(crate::openapi::JobIdParam, SearchParams),
    responses(
        (status = 200, description = "The matching lines, in order.", body = LogMatches),
        (status = 400, description = "`q` is missing, empty or too long, `after` or `limit` is \
            not a number, or the query string cannot be read (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<LogMatches>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let needle = params.q.unwrap_or_default();
    if needle.is_empty() || needle.len() > MAX_NEEDLE_BYTES {
        return Err(ApiError::BadRequest(format!(
            "give the text to look for as `q` (1 to {MAX_NEEDLE_BYTES} bytes), e.g. ?q=Error"
        )));
    }
    let after = number(params.after.as_deref(), "after", 0)?.unwrap_or(0);
    let limit = number(params.limit.as_deref(), "limit", 1)?
        .unwrap_or(DEFAULT_MATCHES)
        .min(MAX_MATCHES);
    owned_job(&state, &user, id).await?;
    let rows = events::search(&state.db, id, &needle, after, limit).await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    Ok(Json(LogMatches {
        matches: rows
            .iter()
            .map(|row| LogLine {
                seq: row.seq,
                text: one_line(row),
            })
            .collect(),
        next_after,
    }))
}
