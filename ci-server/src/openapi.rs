//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json` (no key
//! needed): generated from the handlers' `#[utoipa::path]` annotations and the wire types'
//! schemas (`ci-common`'s feature `openapi`), so that it says what the code does.
//!
//! [`ApiDoc`] lists every operation. A test checks that every route [`crate::router`] serves
//! under `/api/v1`, with each of its methods, is in the document, and that every documented
//! operation is served.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use ci_common::api::{
    ControllerState, ErrorBody, Health, JobList, JobView, LogLine, LogMatches, SessionView,
    StepView, StreamEvent, TestList,
};
use ci_common::db::blobs::BlobMeta;
use ci_common::results::{TestCounts, TestHistory, TestOutcome, TestResult, TestSummary};
use ci_common::{JobId, JobStatus, LogStream, StepState};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse};

use crate::auth::SESSION_COOKIE;
use crate::routes::{
    blobs, events, git_credentials, health, jobs, log, secrets, session, teams, tests, triggers,
    webhooks,
};

/// The name of the security scheme of the API key in the document.
pub const SECURITY_SCHEME: &str = "api_key";

/// The name of the security scheme of a browser's session cookie in the document.
pub const SESSION_SCHEME: &str = "session";

/// The API's description: operations, schemas, responses and the two security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ci",
        description = "The HTTP API of ci: upload a Python project, follow its job's log as \
            server-sent events, and read its test results, log and artifacts. Every endpoint but \
            `/health`, `/ready`, this document, signing in and the trigger token's own \
            (`/trigger/{token}`, `/hooks/{token}`) takes `Authorization: Bearer ci_...` or a \
            browser's session cookie (`POST /api/v1/session`). Every error is \
            `{\"error\", \"code\", \"detail\"}`: `code` is stable, `error` says what to do. \
            Another user's job is a 404, as a job that does not exist."
    ),
    paths(
        jobs::create,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::retry,
        events::follow,
        log::range,
        log::raw,
        log::search,
        tests::list,
        tests::junit,
        blobs::list,
        blobs::get,
        blobs::artifacts,
        blobs::artifact,
        jobs::task_status,
        session::create,
        session::current,
        session::delete,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        webhooks::deliveries,
        document,
        health::health,
        health::ready,
        teams::list,
        secrets::list,
        secrets::set,
        secrets::remove,
        git_credentials::list,
        git_credentials::set,
        git_credentials::remove,
        triggers::create,
        triggers::list,
        triggers::revoke,
        triggers::run,
        triggers::push,
    ),
    components(
        schemas(
            ControllerState,
            ErrorBody,
            Health,
            JobId,
            JobList,
            JobStatus,
            JobView,
            LogLine,
            LogMatches,
            LogStream,
            SessionView,
            session::SignIn,
            StepState,
            StepView,
            StreamEvent,
            TestCounts,
            TestHistory,
            TestList,
            TestOutcome,
            TestResult,
            TestSummary,
            BlobMeta,
            blobs::BlobList,
            blobs::ArtifactList,
            blobs::Artifact,
            teams::TeamList,
            secrets::SecretList,
            secrets::SetSecret,
            ci_common::db::secret_variables::SecretVariable,
            teams::TeamView,
            ci_common::git::GitJobRequest,
            ci_common::git::GitSource,
            ci_common::git::GitView,
            ci_common::webhooks::NewWebhook,
            ci_common::webhooks::CreatedWebhook,
            ci_common::webhooks::WebhookView,
            ci_common::webhooks::WebhookList,
            ci_common::webhooks::WebhookEvent,
            ci_common::webhooks::DeliveryView,
            ci_common::webhooks::DeliveryList,
            ci_common::webhooks::DeliveryState,
            ci_common::webhooks::Payload,
            ci_common::webhooks::PayloadJob,
            ci_common::WebhookId,
            ci_common::DeliveryId,
        ),
        responses(
            Unauthorized,
            CrossOrigin,
            JobNotFound,
            WebhookNotFound,
            Timeout,
            KeyRateLimited,
            SignInsLimited,
            BlobBytes,
            BlobRange,
            RangeNotSatisfiable
        )
    ),
    modifiers(&BearerKey, &TimeLimits, &KeyRates),
    tags(
        (name = "jobs", description = "Upload, list, show, follow, cancel and retry jobs."),
        (name = "log", description = "A job's log as text: by line range, whole, searched."),
        (name = "tests", description = "A job's test results."),
        (name = "blobs", description = "A job's stored files: raw reports and artifacts."),
        (name = "artifacts", description = "The files a job's tasks kept."),
        (name = "webhooks", description = "Outgoing webhooks: the caller's receivers of job \
            events, and their deliveries. A delivery POSTs a `Payload` as JSON, signed in \
            `X-CI-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` with the \
            webhook's secret; `X-CI-Delivery` (the body's `id`) is the same on every attempt."),
        (name = "session", description = "Browser sign-in: a session cookie made from an API \
            key."),
        (name = "teams", description = "The teams you are a member of. A job submitted to a \
            team (`team` in the upload or the JSON request) is visible to all its members."),
        (name = "secrets", description = "Secret variables of yours or of a team \
            (`?team=NAME`): sealed at rest, never returned, given to the steps of the tasks that \
            list them (`secrets = [...]`) and masked in the log."),
        (name = "git-credentials", description = "Your credentials for private git remotes, \
            one per host, sealed at rest; never returned."),
        (name = "triggers", description = "Trigger tokens bound to a task and a git source, \
            and what they start: a run (`/trigger/{token}`) or a signed push webhook \
            (`/hooks/{token}`), without an API key."),
        (name = "health", description = "Liveness and readiness of a replica (no key)."),
        (name = "openapi", description = "This document (no key)."),
    )
)]
pub struct ApiDoc;

/// The document as JSON, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| render(&ApiDoc::openapi()));

/// The document as pretty JSON. utoipa 5 writes a response link's `operationId` and
/// `operationRef` as `operation_id` and `operation_ref`, which OpenAPI tools do not read: they are
/// renamed here.
fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut json = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    let operations = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
            .into_iter()
            .flat_map(|responses| responses.values_mut());
        for response in responses {
            let links = response
                .get_mut("links")
                .and_then(serde_json::Value::as_object_mut)
                .into_iter()
                .flat_map(|links| links.values_mut())
                .filter_map(serde_json::Value::as_object_mut);
            for link in links {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.to_owned(), value);
                    }
                }
            }
        }
    }
    serde_json::to_string_pretty(&json).expect("JSON serializes")
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document. No key needed.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "get_openapi_document",
    tag = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.",
        content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The `{id}` of a job's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobIdParam {
    /// The job's id. Another user's job, or an id that is not a UUID, is a 404 like a job that
    /// does not exist.
    pub id: JobId,
}

/// The `{id}` of a webhook's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookIdParam {
    /// The webhook's id. Another user's webhook, or an id that is not a UUID, is a 404 like a
    /// webhook that does not exist.
    pub id: ci_common::WebhookId,
}

/// The `Range` header of a blob's or artifact's bytes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RangeHeader {
    /// One byte range (RFC 9110), e.g. `bytes=0-1023` or `bytes=-512`: answered with 206.
    #[param(rename = "Range")]
    pub range: Option<String>,
}

/// The API key is missing, malformed, mistyped, unknown, revoked or expired, its user is
/// inactive, or the browser session ended: `code` says which (`missing_api_key`,
/// `malformed_authorization`, `mistyped_api_key`, `unknown_api_key`, `revoked_api_key`,
/// `expired_api_key`, `inactive_user`, `signed_out`), `error` what to do.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"ci\"`")))]
pub struct Unauthorized(pub ErrorBody);

/// A request that changes something, signed in with the session cookie, does not come from
/// this server's own pages (its `Origin`), or a sign-in comes from another site's page
/// (`cross_origin_request`). Requests with an API key are never refused so.
#[derive(ToResponse)]
pub struct CrossOrigin(pub ErrorBody);

/// No job with this id for the caller (`job_not_found`): it does not exist, belongs to another
/// user, or the id is not a UUID.
#[derive(ToResponse)]
pub struct JobNotFound(pub ErrorBody);

/// No webhook with this id for the caller (`webhook_not_found`): it does not exist, belongs to
/// another user, or the id is not a UUID.
#[derive(ToResponse)]
pub struct WebhookNotFound(pub ErrorBody);

/// The request took longer than the server's time limit (`timeout`): the request time limit,
/// or the upload time limit for an upload.
#[derive(ToResponse)]
pub struct Timeout(pub ErrorBody);

/// The caller's key made more requests than this replica allows a minute
/// (`ci-server --key-rate-per-minute`; `rate_limited`, with `Retry-After` in seconds).
#[derive(ToResponse)]
pub struct KeyRateLimited(pub ErrorBody);

/// Too many refused sign-ins from the caller's address this minute
/// (`ci-server --sign-in-failures-per-minute`; `too_many_sign_ins`, with `Retry-After` in
/// seconds). Not recorded in the audit log.
#[derive(ToResponse)]
pub struct SignInsLimited(pub ErrorBody);

/// The whole blob, streamed, with its stored content type (`application/octet-stream` when it
/// has none).
#[derive(ToResponse)]
#[response(
    content_type = "*/*",
    headers(
        ("Content-Length" = i64, description = "The blob's size in bytes."),
        ("ETag" = String, description = "The blob's SHA-256 in hex, quoted."),
        ("Accept-Ranges" = String, description = "`bytes`"),
    )
)]
pub struct BlobBytes(#[to_schema] pub Binary);

/// The one byte range the `Range` header asked for.
#[derive(ToResponse)]
#[response(
    content_type = "*/*",
    headers(
        ("Content-Length" = i64, description = "The range's size in bytes."),
        ("Content-Range" = String, description = "`bytes START-END/SIZE`"),
        ("ETag" = String, description = "The whole blob's SHA-256 in hex, quoted."),
        ("Accept-Ranges" = String, description = "`bytes`"),
    )
)]
pub struct BlobRange(#[to_schema] pub Binary);

/// The `Range` header is not one range within the blob (several ranges, or one past its end)
/// (`range_not_satisfiable`).
#[derive(ToResponse)]
#[response(headers(("Content-Range" = String, description = "`bytes */SIZE`")))]
pub struct RangeNotSatisfiable(pub ErrorBody);

/// Bytes of any kind.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// Adds the security schemes that the operations' `security` names: the API key, and the
/// browser's session cookie.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ci_...")
                    .description(Some(
                        "An API key, `Authorization: Bearer ci_...` (an administrator creates \
                         keys with `ci-admin key create`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "A browser's session (`POST /api/v1/session`): HttpOnly, SameSite=Strict. A \
                 request that changes something must come from this server's own pages.",
            ))),
        );
    }
}

/// Every route answers 503 `timeout` past its time limit (see [`crate::router`]): adds that
/// answer to every operation that does not document its own 503.
struct TimeLimits;

impl Modify for TimeLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_response(openapi, "503", "Timeout", |_| true);
    }
}

/// Every route that takes a key may answer 429 past the key's rate (see [`KeyRateLimited`]):
/// adds that answer to every operation with a security requirement that does not document its
/// own 429.
struct KeyRates;

impl Modify for KeyRates {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_response(openapi, "429", "KeyRateLimited", |operation| {
            operation.security.is_some()
        });
    }
}

/// Adds the response component `name` under `status` to every operation `applies` to that does
/// not document that status itself.
fn add_response(
    openapi: &mut utoipa::openapi::OpenApi,
    status: &str,
    name: &str,
    applies: impl Fn(&utoipa::openapi::path::Operation) -> bool,
) {
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        .filter(|operation| applies(operation))
        {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
        }
    }
}

#[cfg(test)]
mod document_tests {
    use std::collections::BTreeSet;

    use axum::body::{to_bytes, Body};
    use axum::http::{Method, Request, StatusCode};
    use ci_common::api::API_PREFIX;
    use ci_common::testing::TempDb;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt as _;
    use utoipa::openapi::path::{Operation, PathItem};

    use super::*;
    use crate::{AppState, Config, RouteLimits};

    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];

    fn operation<'a>(item: &'a PathItem, method: &Method) -> Option<&'a Operation> {
        match *method {
            Method::GET => item.get.as_ref(),
            Method::POST => item.post.as_ref(),
            Method::PUT => item.put.as_ref(),
            Method::DELETE => item.delete.as_ref(),
            Method::PATCH => item.patch.as_ref(),
            _ => None,
        }
    }

    /// A path that matches the route: every `{param}` (or `{*param}`) filled in.
    fn concrete(route: &str) -> String {
        route
            .split('/')
            .map(|segment| match segment {
                "{id}" => JobId::new().to_string(),
                s if s.starts_with('{') => "x".to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The route as the document writes it: `{*name}` is `{name}`.
    fn documented(route: &str) -> String {
        route.replace("{*", "{")
    }

    /// The status and error `code` of a request without a key (authenticated routes answer 401
    /// at once; the others answer without waiting for anything).
    async fn answer(state: &AppState, method: &Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = crate::router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, code)
    }

    fn served(status: StatusCode, code: &str) -> bool {
        let unknown = status == StatusCode::NOT_FOUND && code == "not_found";
        let wrong_method = status == StatusCode::METHOD_NOT_ALLOWED;
        !unknown && !wrong_method
    }

    #[tokio::test]
    async fn every_api_route_and_method_is_documented_and_every_operation_is_served() {
        let db = TempDb::new().await;
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        let doc = ApiDoc::openapi();
        let routes: Vec<String> = crate::api_routes(&RouteLimits::new(&state.config))
            .into_iter()
            .map(|(path, _)| format!("{API_PREFIX}{path}"))
            .collect();
        assert!(routes.len() >= 13, "{routes:?}");

        for route in &routes {
            let Some(item) = doc.paths.paths.get(&documented(route)) else {
                panic!(
                    "{route} is served but not in the OpenAPI document: annotate its handlers \
                     with #[utoipa::path] and list them in `paths` of openapi::ApiDoc"
                );
            };
            let path = concrete(route);
            for method in &METHODS {
                let (status, code) = answer(&state, method, &path).await;
                assert_eq!(
                    served(status, &code),
                    operation(item, method).is_some(),
                    "{method} {route} (answered {status} {code:?}): every method a route serves \
                     is documented, and only those"
                );
            }
        }

        let routes: BTreeSet<String> = routes.iter().map(|r| documented(r)).collect();
        let mut operation_ids = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            assert!(
                !path.starts_with(API_PREFIX) || routes.contains(path),
                "{path} is documented but not served"
            );
            for method in &METHODS {
                let Some(operation) = operation(item, method) else {
                    continue;
                };
                let (status, code) = answer(&state, method, &concrete(path)).await;
                assert!(
                    served(status, &code),
                    "{method} {path} is documented but answers {status} {code:?}"
                );
                let id = operation.operation_id.clone().expect("an operation id");
                assert!(operation_ids.insert(id.clone()), "operation id {id} twice");
                // A trigger token in the path is the credential of its routes.
                let secured = operation.security.is_some() || path.contains("{token}");
                assert_eq!(
                    secured,
                    status == StatusCode::UNAUTHORIZED,
                    "{method} {path}: documented as needing a key: {secured}, answered {status} \
                     without one"
                );
            }
        }
    }

    /// The status and error code of `method path` with `key`.
    async fn answer_with(
        state: &AppState,
        method: &Method,
        path: &str,
        key: &str,
    ) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = crate::router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, code)
    }

    #[tokio::test]
    async fn a_read_key_may_read_every_route_and_change_none() {
        use ci_common::db::api_keys::{self, KeyScope};
        use ci_common::keys::SecretKey;
        let db = TempDb::new().await;
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        let user = ci_common::db::users::create(&db.pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let mut keys = Vec::new();
        for scope in [KeyScope::Read, KeyScope::Submit] {
            let secret = SecretKey::generate();
            api_keys::create_scoped(&db.pool, user.id, "k", &secret, None, scope)
                .await
                .unwrap();
            keys.push((scope, secret.expose().to_owned()));
        }
        let doc = ApiDoc::openapi();
        let mut refused = 0;
        for (path, item) in &doc.paths.paths {
            for method in &METHODS {
                let Some(operation) = operation(item, method) else {
                    continue;
                };
                if operation.security.is_none() {
                    continue;
                }
                for (scope, key) in &keys {
                    let (status, code) = answer_with(&state, method, &concrete(path), key).await;
                    let changes = *method != Method::GET && path != "/api/v1/session";
                    let expect_refusal = *scope == KeyScope::Read && changes;
                    assert_eq!(
                        code == "read_only_key",
                        expect_refusal,
                        "{method} {path} with a {scope:?} key answered {status} {code:?}"
                    );
                    if expect_refusal {
                        assert_eq!(status, StatusCode::FORBIDDEN);
                        refused += 1;
                    }
                }
            }
        }
        assert!(
            refused >= 9,
            "every route that changes something: {refused}"
        );
    }

    #[tokio::test]
    async fn the_document_is_served_without_a_key_as_openapi_3_1() {
        let db = TempDb::new().await;
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        let request = Request::get(format!("{API_PREFIX}/openapi.json"))
            .body(Body::empty())
            .unwrap();
        let response = crate::router(state).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        // Links name their operation as OpenAPI spells it, and it exists.
        let link =
            &doc["paths"]["/api/v1/jobs/{id}/blobs"]["get"]["responses"]["200"]["links"]["GetBlob"];
        assert_eq!(link["operationId"], "get_blob", "{link}");
        assert_eq!(
            doc["paths"]["/api/v1/jobs/{id}/blobs/{name}"]["get"]["operationId"],
            "get_blob"
        );
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("\"operation_id\""), "a link in snake case");
        let scheme = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        let cookie = &doc["components"]["securitySchemes"][SESSION_SCHEME];
        assert_eq!(
            (&cookie["type"], &cookie["in"], &cookie["name"]),
            (&"apiKey".into(), &"cookie".into(), &SESSION_COOKIE.into())
        );
        // Every error status of an operation is the one error body.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if !status.starts_with('4') && !status.starts_with('5') {
                        continue;
                    }
                    let response = match response["$ref"].as_str() {
                        Some(r) => {
                            let name = r.rsplit('/').next().unwrap();
                            &doc["components"]["responses"][name]
                        }
                        None => response,
                    };
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        // Each event type of the stream has its schema.
        let events = &doc["components"]["schemas"]["StreamEvent"]["oneOf"];
        let text = events.to_string();
        for kind in ["log", "notice", "status", "step", "summary", "complete"] {
            assert!(
                text.contains(&format!("[\"{kind}\"]")),
                "no `{kind}` event: {text}"
            );
        }
    }
}
