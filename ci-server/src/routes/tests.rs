//! `GET /api/v1/jobs/{id}/tests`: a job's test results, page by page, with its counts.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ci_common::api::{ErrorBody, TestList};
use ci_common::db::test_results::{self, Attempts};
use ci_common::results::{junit_xml, TestOutcome};
use serde::Deserialize;

use super::jobs::query_error;
use super::{owned_job, JobPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// The query of `GET /api/v1/jobs/{id}/tests`: which tests, and which page.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TestsParams {
    /// Only the tests with this outcome.
    #[param(value_type = Option<TestOutcome>)]
    pub outcome: Option<String>,
    /// `last` (the default: each test once, from its last attempt) or `all`.
    #[param(value_type = Option<String>, pattern = "^(last|all)$")]
    pub attempts: Option<String>,
    /// Tests on the page (default 100; more than 1000 is 1000).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<String>,
    /// Tests to skip: the `next_offset` of the previous page (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
}

/// What a query asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct TestsQuery {
    pub outcome: Option<TestOutcome>,
    pub attempts: Attempts,
    pub limit: i64,
    pub offset: i64,
}

impl TestsParams {
    /// The outcome, page size and offset, or what is wrong with them.
    pub fn parse(&self) -> Result<TestsQuery, ApiError> {
        let outcome = match self.outcome.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<TestOutcome>()
                    .map_err(|e| ApiError::BadRequest(format!("`outcome`: {e}")))?,
            ),
        };
        let attempts = match self.attempts.as_deref() {
            None | Some("") | Some("last") => Attempts::Last,
            Some("all") => Attempts::All,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "`attempts` must be \"last\" (each test once, from its last attempt) or \"all\", not {other:?}"
                )));
            }
        };
        let number = |value: Option<&str>, min: i64, what: &str, range: &str| match value {
            None | Some("") => Ok(None),
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(ApiError::BadRequest(format!(
                    "`{what}` must be {range}, not {text:?}"
                ))),
            },
        };
        let limit = number(
            self.limit.as_deref(),
            1,
            "limit",
            &format!("a number from 1 to {MAX_LIMIT}"),
        )?
        .map_or(DEFAULT_LIMIT, |n| n.min(MAX_LIMIT));
        let offset = number(
            self.offset.as_deref(),
            0,
            "offset",
            "a number of 0 or more (the `next_offset` of the previous page)",
        )?
        .unwrap_or(0);
        Ok(TestsQuery {
            outcome,
            attempts,
            limit,
            offset,
        })
    }
}

/// `GET /api/v1/jobs/{id}/tests?outcome=failed&attempts=last&limit=100&offset=0`. Failing and
/// flaky tests carry their history: how often they failed in the owner's recent jobs of the same
/// project.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/tests",
    operation_id = "list_tests",
    tag = "tests",
    params(crate::openapi::JobIdParam, TestsParams),
    responses(
        (status = 200, description = "One page of the job's tests, in the order they finished, \
            with the job's counts.", body = TestList),
        (status = 400, description = "`outcome`, `attempts`, `limit` or `offset` is not what \
            it should be (the message lists what is allowed), or the query string cannot be \
            read (`bad_request`).", body = ErrorBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
    params: Result<Query<TestsParams>, QueryRejection>,
) -> Result<Json<TestList>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let query = params.parse()?;
    owned_job(&state, &user, id).await?;
    // One more than asked, to know whether there is a next page.
    let mut tests = test_results::list(
        &state.db,
        id,
        query.outcome,
        query.attempts,
        query.limit + 1,
        query.offset,
    )
    .await?;
    let next_offset = (tests.len() as i64 > query.limit).then(|| query.offset + query.limit);
    tests.truncate(query.limit as usize);
    let noteworthy: Vec<String> = tests
        .iter()
        .filter(|t| t.outcome.is_failure() || t.outcome == TestOutcome::Flaky)
        .map(|t| t.nodeid.clone())
        .collect();
    let mut history =
        test_results::history(&state.db, id, &noteworthy, test_results::HISTORY_RUNS).await?;
    for test in &mut tests {
        if test.outcome.is_failure() || test.outcome == TestOutcome::Flaky {
            test.history = history.remove(&test.nodeid);
        }
    }
    let counts = test_results::counts(&state.db, id).await?;
    Ok(Json(TestList {
        tests,
        counts,
        next_offset,
    }))
}

/// Most results a JUnit report holds (the stored results of a job are capped lower).
const JUNIT_MAX_TESTS: i64 = 1_000_000;

/// `GET /api/v1/jobs/{id}/junit.xml`: the job's results as JUnit XML (see
/// [`ci_common::results::junit_xml`]), for tools that read that format. A job without results
/// is an empty suite.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/junit.xml",
    operation_id = "get_junit_xml",
    tag = "tests",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "One `testsuite` with every test by its last attempt, in \
            UTF-8.", content_type = "application/xml", body = String),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::JobNotFound),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn junit(
    State(state): State<AppState>,
    user: AuthUser,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    owned_job(&state, &user, id).await?;
    let results =
        test_results::list(&state.db, id, None, Attempts::All, JUNIT_MAX_TESTS, 0).await?;
    let xml = tokio::task::spawn_blocking(move || junit_xml(&format!("ci job {id}"), &results))
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("writing JUnit XML")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        xml,
    )
        .into_response())
}

#[cfg(test)]
mod endpoint_tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use ci_common::db::{api_keys, jobs, lease, steps, users};
    use ci_common::keys::SecretKey;
    use ci_common::project::RootFiles;
    use ci_common::results::{read_report, ReportCaps};
    use ci_common::step::test_task;
    use ci_common::testing::TempDb;
    use ci_common::JobId;
    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt as _;

    use super::*;
    use crate::Config;

    async fn user(db: &TempDb, name: &str) -> String {
        let user = users::create(&db.pool, name, &format!("{name}@example.com"))
            .await
            .unwrap();
        let key = SecretKey::generate();
        api_keys::create(&db.pool, user.id, "test", &key, None)
            .await
            .unwrap();
        key.expose().to_owned()
    }

    /// A job of the key's owner with stored results: 1000 tests, every 100th from the 7th
    /// failed, the 50th an error.
    async fn job_with_results(db: &TempDb, owner: &str) -> JobId {
        let owner = api_keys::find_by_secret(&db.pool, &SecretKey::parse(owner).unwrap())
            .await
            .unwrap()
            .unwrap()
            .1;
        let epoch = lease::acquire(&db.pool, "t").await.unwrap().epoch;
        jobs::create(&db.pool, owner.id, "test", b"zip")
            .await
            .unwrap();
        let job = jobs::claim_next(&db.pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        let (specs, _) = test_task(
            &RootFiles::default(),
            "img",
            &[],
            ci_common::project::Installer::Auto,
        )
        .unwrap();
        steps::plan(&db.pool, job.id, epoch, &specs).await.unwrap();
        let mut lines = String::new();
        for i in 0..1000 {
            let outcome = match i {
                50 => "error",
                i if i % 100 == 7 => "failed",
                _ => "passed",
            };
            lines.push_str(&format!(
                "{{\"type\": \"test\", \"nodeid\": \"t.py::test_{i}\", \"file\": \"t.py\", \
                 \"line\": {}, \"outcome\": \"{outcome}\", \"duration\": 0.001, \
                 \"message\": \"m{i}\", \"longrepr\": \"E  boom {i}\"}}\n",
                i + 1
            ));
        }
        let report = read_report(lines.as_bytes(), &ReportCaps::default()).unwrap();
        test_results::store(&db.pool, job.id, epoch, "test", 1, &report)
            .await
            .unwrap();
        job.id
    }

    async fn get(db: &TempDb, key: &str, path: &str) -> (StatusCode, Value) {
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        let response = crate::router(state)
            .oneshot(
                Request::get(path)
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn nodeids(body: &Value) -> Vec<&str> {
        body["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["nodeid"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn results_are_filtered_by_outcome_and_paged_with_the_counts() {
        let db = TempDb::new().await;
        let ada = user(&db, "ada").await;
        let job = job_with_results(&db, &ada).await;
        let path = format!("/api/v1/jobs/{job}/tests");

        let (status, failed) = get(&db, &ada, &format!("{path}?outcome=failed")).await;
        assert_eq!(status, StatusCode::OK, "{failed}");
        assert_eq!(nodeids(&failed).len(), 10);
        assert_eq!(nodeids(&failed)[0], "t.py::test_7");
        let first = &failed["tests"][0];
        assert_eq!(first["outcome"], "failed");
        assert_eq!(first["file"], "t.py");
        assert_eq!(first["line"], 8);
        assert_eq!(first["message"], "m7");
        assert_eq!(first["longrepr"], "E  boom 7");
        assert_eq!(failed["next_offset"], Value::Null);
        assert_eq!(
            failed["counts"]["outcomes"],
            serde_json::json!({"failed": 10, "error": 1, "passed": 989})
        );

        let (_, errors) = get(&db, &ada, &format!("{path}?outcome=error")).await;
        assert_eq!(nodeids(&errors), ["t.py::test_50"]);

        // The default page, then a page in the middle, then the last one.
        let (_, page) = get(&db, &ada, &path).await;
        assert_eq!(nodeids(&page).len(), DEFAULT_LIMIT as usize);
        assert_eq!(page["next_offset"], DEFAULT_LIMIT);
        let (_, page) = get(
            &db,
            &ada,
            &format!("{path}?outcome=failed&limit=3&offset=3"),
        )
        .await;
        assert_eq!(
            nodeids(&page),
            ["t.py::test_307", "t.py::test_407", "t.py::test_507"]
        );
        assert_eq!(page["next_offset"], 6);
        let (_, last) = get(&db, &ada, &format!("{path}?limit=5000&offset=990")).await;
        assert_eq!(nodeids(&last).len(), 10);
        assert_eq!(last["next_offset"], Value::Null);
        // The limit is capped.
        let (_, all) = get(&db, &ada, &format!("{path}?limit=5000")).await;
        assert_eq!(nodeids(&all).len(), MAX_LIMIT as usize);
        assert_eq!(all["next_offset"], Value::Null, "exactly 1000 tests");
        let (_, past) = get(&db, &ada, &format!("{path}?offset=5000")).await;
        assert_eq!(past["tests"], serde_json::json!([]));
        assert_eq!(past["counts"]["outcomes"]["passed"], 989);
    }

    #[tokio::test]
    async fn another_users_job_is_not_found_and_bad_queries_say_what_is_allowed() {
        let db = TempDb::new().await;
        let ada = user(&db, "ada").await;
        let bob = user(&db, "bob").await;
        let job = job_with_results(&db, &ada).await;
        let path = format!("/api/v1/jobs/{job}/tests");

        let (status, theirs) = get(&db, &bob, &path).await;
        let (missing_status, missing) =
            get(&db, &bob, &format!("/api/v1/jobs/{}/tests", JobId::new())).await;
        assert_eq!(
            (status, missing_status),
            (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
        );
        assert_eq!(theirs, missing);
        assert_eq!(theirs["code"], "job_not_found");
        let (status, _) = get(&db, "ci_nonsense", &path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, body) = get(&db, &ada, &format!("{path}?outcome=broken")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "bad_request");
        let message = body["error"].as_str().unwrap();
        for outcome in TestOutcome::ALL {
            assert!(message.contains(outcome.as_str()), "{message}");
        }
        for bad in ["limit=0", "limit=x", "offset=-1"] {
            let (status, body) = get(&db, &ada, &format!("{path}?{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
    }

    #[tokio::test]
    async fn junit_xml_holds_every_result_with_the_same_counts() {
        let db = TempDb::new().await;
        let ada = user(&db, "ada").await;
        let bob = user(&db, "bob").await;
        let job = job_with_results(&db, &ada).await;
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        let request = |key: &str| {
            Request::get(format!("/api/v1/jobs/{job}/junit.xml"))
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap()
        };
        let response = crate::router(state.clone())
            .oneshot(request(&ada))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "application/xml; charset=utf-8"
        );
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let xml = std::str::from_utf8(&body).unwrap();
        assert!(
            xml.contains("tests=\"1000\" failures=\"10\" errors=\"1\""),
            "{}",
            &xml[..300]
        );
        assert_eq!(xml.matches("<testcase ").count(), 1000);
        let response = crate::router(state).oneshot(request(&bob)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "another user's job"
        );
    }

    #[tokio::test]
    async fn a_job_without_results_has_no_tests_and_no_counts() {
        let db = TempDb::new().await;
        let ada = user(&db, "ada").await;
        let owner = users::find_by_email(&db.pool, "ada@example.com")
            .await
            .unwrap()
            .unwrap();
        let job = jobs::create(&db.pool, owner.id, "test", b"zip")
            .await
            .unwrap();
        let (status, body) = get(&db, &ada, &format!("/api/v1/jobs/{}/tests", job.id)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"tests": [], "counts": null, "next_offset": null})
        );
    }
}
