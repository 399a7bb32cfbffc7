//! The web UI under `/ui/`: plain HTML, CSS and JavaScript from `ci-server/ui/`, embedded in the
//! binary at build time (`build.rs`) and served by memory-serve with ETags and gzip/brotli.
//!
//! The pages are shells that read everything through `/api/v1` with the session cookie; the
//! server only decides which shell to send: the sign-in page to a caller who is not signed in
//! (a redirect that keeps the path, and the browser keeps the `#L123` fragment), the job page for
//! the caller's own job, and a "not found" page with status 404 for anyone else's or a missing
//! one. `/ui/assets/...` are the scripts and the style sheet.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use memory_serve::{CacheControl, MemoryServe};
use tower::ServiceExt;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::routes::owned_job;
use crate::AppState;

/// The sign-in page's path.
const SIGNIN_PATH: &str = "/ui/signin";

/// Every page and asset is revalidated (a cheap 304 by ETag), so a new server's UI is seen at
/// once.
fn configured(serve: MemoryServe) -> MemoryServe {
    serve
        .index_file(None)
        .html_cache_control(CacheControl::NoCache)
        .cache_control(CacheControl::NoCache)
        .enable_brotli(true)
        .enable_gzip(true)
}

/// `ui/pages/`: only ever served through the handlers below, never by their file names.
static PAGES: LazyLock<Router> =
    LazyLock::new(|| configured(memory_serve::load!("pages")).into_router());

/// `ui/assets/`, served as they are under `/ui/assets/`.
static ASSETS: LazyLock<Router> =
    LazyLock::new(|| configured(memory_serve::load!("assets")).into_router());

/// `ui/assets/` under `/ui/assets/`, with the UI's security headers.
pub fn assets() -> Router {
    ASSETS
        .clone()
        .layer(axum::middleware::map_response(security_headers))
}

/// `/` and `/ui` → `/ui/`.
pub async fn to_ui() -> Redirect {
    Redirect::to("/ui/")
}

/// `/ui/`: the caller's jobs.
pub async fn jobs_page(user: Result<AuthUser, ApiError>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(err) = user {
        return signin_or_error(err, &uri);
    }
    page("/jobs.html", StatusCode::OK, headers).await
}

/// `/ui/signin?next=/ui/...`: paste an API key once.
pub async fn signin_page(headers: HeaderMap) -> Response {
    page("/signin.html", StatusCode::OK, headers).await
}

/// `/ui/jobs/{id}`: one of the caller's jobs, or 404.
pub async fn job_page(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let user = match user {
        Ok(user) => user,
        Err(err) => return signin_or_error(err, &uri),
    };
    let Ok(id) = id.parse() else {
        return not_found(headers).await;
    };
    match owned_job(&state, &user, id).await {
        Ok(_) => page("/job.html", StatusCode::OK, headers).await,
        Err(ApiError::JobNotFound) => not_found(headers).await,
        Err(err) => err.into_response(),
    }
}

/// Any other path under `/ui/`.
pub async fn not_found_page(headers: HeaderMap) -> Response {
    not_found(headers).await
}

async fn not_found(mut headers: HeaderMap) -> Response {
    // A 404 always carries its page (never a 304 for it).
    headers.remove(header::IF_NONE_MATCH);
    page("/not-found.html", StatusCode::NOT_FOUND, headers).await
}

/// For a caller who could not be authenticated: a redirect to the sign-in page (which comes back
/// to `uri` afterwards) when they are not signed in; other failures (the database) as errors.
fn signin_or_error(err: ApiError, uri: &Uri) -> Response {
    match err {
        ApiError::Unauthorized { .. } => {
            let next = uri.path_and_query().map_or("/ui/", |p| p.as_str());
            let location = format!("{SIGNIN_PATH}?next={}", encode_component(next));
            Redirect::to(&location).into_response()
        }
        err => err.into_response(),
    }
}

/// Serves one of `ui/pages/` with `status`, negotiating compression and ETag from the request's
/// `headers`.
async fn page(name: &'static str, status: StatusCode, headers: HeaderMap) -> Response {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = Uri::from_static(name);
    *request.headers_mut() = headers;
    let mut response = match PAGES.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

/// What every UI response carries: the pages run only their own scripts and styles, talk only to
/// this server, and are never framed.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Percent-encodes everything but unreserved characters and `/` (a path as a query value).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_query_is_encoded_as_one_query_value() {
        assert_eq!(
            encode_component("/ui/?status=failed&task=lint"),
            "/ui/%3Fstatus%3Dfailed%26task%3Dlint"
        );
        assert_eq!(encode_component("/ui/jobs/ab-12"), "/ui/jobs/ab-12");
    }
}
