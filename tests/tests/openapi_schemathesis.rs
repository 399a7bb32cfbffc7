//! The server against its own OpenAPI document (`GET /api/v1/openapi.json`): schemathesis
//! generates requests for every documented operation but the event stream, valid and invalid,
//! and checks that the server never answers 5xx and that every answer has a documented status,
//! content type and body schema. Needs schemathesis: `scripts/ensure-schemathesis.sh` installs
//! it (`scripts/test.sh` runs that); the test fails, never skips, without it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common_server;

use ci_common::db::blobs::{self, BlobCaps};
use ci_common::db::{steps, test_results};
use ci_common::project::{Installer, RootFiles};
use ci_common::results::{read_report, ReportCaps};
use ci_common::step::test_task;
use ci_common::{JobId, JobStatus, StepState};
use ci_tests::{client, fixture, submit, zip_dir, Proc, Server, TestDb};
use common_server::{lines, FakeController, TEST_TIMEOUT};

/// The checks that must pass: no 5xx, and answers as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// The document's path.
const DOCUMENT: &str = "/api/v1/openapi.json";

/// The paths left out: the event stream follows a queued job until it ends, so it would never
/// finish answering.
const EXCLUDED: &str = "/events";

/// Test cases per operation and phase: enough to reach every status an operation documents,
/// few enough for well under a minute on two cores.
const MAX_EXAMPLES: &str = "60";

/// A fixed seed, so that a failure reproduces (`st replay` or the same command line).
const SEED: &str = "20260101";

/// Longest the run may take before the test fails (it takes about 20 s on two idle cores).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Where `scripts/ensure-schemathesis.sh` installs schemathesis (the same defaults).
fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("CI_SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache.join("ci-dev").join("schemathesis")
        });
    let exe = venv.join("bin").join("schemathesis");
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        exe.is_file(),
        "schemathesis is not installed at {}{}: run scripts/ensure-schemathesis.sh (scripts/test.sh \
         does), then run this test again",
        exe.display(),
        if in_ci {
            " (CI=true: the test suite needs it)"
        } else {
            ""
        }
    );
    exe
}

/// Runs the oldest queued job as the controller would, with everything a job can have: its
/// steps, log lines, test results (a failure and a pass), a raw report and an artifact, and its
/// end (`failed`).
async fn ran(db: &TestDb) -> JobId {
    let controller = FakeController::new(&db.pool).await;
    let job = controller.claim().await;
    let epoch = controller.epoch;
    let (specs, _) = test_task(&RootFiles::default(), "img", &[], Installer::Auto).unwrap();
    let planned = steps::plan(&db.pool, job, epoch, &specs).await.unwrap();
    let last = planned.last().expect("a step").position;
    for step in &planned {
        steps::start(&db.pool, job, epoch, step.position)
            .await
            .unwrap();
        controller.log(job, &lines(0..3)).await;
        let (state, code) = if step.position == last {
            (StepState::Failed, 1)
        } else {
            (StepState::Passed, 0)
        };
        steps::finish(&db.pool, job, epoch, step.position, state, Some(code), None)
            .await
            .unwrap();
    }
    let report = "{\"type\": \"test\", \"nodeid\": \"t.py::test_a\", \"file\": \"t.py\", \
                  \"line\": 1, \"outcome\": \"failed\", \"duration\": 0.01, \
                  \"message\": \"assert 1 == 2\", \"longrepr\": \"E  assert 1 == 2\"}\n\
                  {\"type\": \"test\", \"nodeid\": \"t.py::test_b\", \"file\": \"t.py\", \
                  \"line\": 4, \"outcome\": \"passed\", \"duration\": 0.002}\n";
    let results = read_report(report.as_bytes(), &ReportCaps::default()).unwrap();
    test_results::store(&db.pool, job, epoch, "test", 1, &results)
        .await
        .unwrap();
    for (name, content_type, data) in [
        ("reports/test.jsonl", "application/x-ndjson", report),
        ("artifacts/notes.txt", "text/plain", "built\n"),
    ] {
        let caps = BlobCaps::default();
        blobs::put(
            &db.pool,
            job,
            Some(epoch),
            name,
            content_type,
            data.as_bytes(),
            &caps,
        )
        .await
        .unwrap();
    }
    controller.finish(job, JobStatus::Failed).await;
    job
}

/// A schemathesis configuration that uses, half of the time, the caller's jobs as `{id}`, the
/// names that exist as the artifact's and the task's name (a blob's name has a `/`, which a path
/// parameter cannot hold: `GET .../blobs/{name}` serves its bytes as the artifact's does), and
/// the caller's key to sign in with.
fn known_values(jobs: &[String], key: &str) -> String {
    let jobs = jobs
        .iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[dictionaries.jobs]
values = [{jobs}]

[dictionaries.artifacts]
values = ["notes.txt"]

[dictionaries.tasks]
values = ["test"]

[dictionaries.keys]
values = [{key:?}]

[parameters]
"path.id" = {{ dictionary = "jobs", probability = 0.5 }}

[[operations]]
include-operation-id = "get_artifact"
parameters = {{ "path.id" = {{ dictionary = "jobs", probability = 0.5 }}, "path.path" = {{ dictionary = "artifacts", probability = 0.5 }} }}

[[operations]]
include-operation-id = "sign_in"
parameters = {{ "body.api_key" = {{ dictionary = "keys", probability = 0.5 }} }}

[[operations]]
include-operation-id = "get_task_status"
parameters = {{ "path.name" = {{ dictionary = "tasks", probability = 0.5 }} }}
"#
    )
}

#[tokio::test]
async fn the_server_answers_as_its_openapi_document_says() {
    let exe = schemathesis();
    let db = TestDb::new().await;
    let ada = db.user("Ada").await;
    let server = Server::start(&db);
    // Jobs to list, show, cancel and retry: one that ran, with all a job can have, and two
    // queued ones (no controller runs them); and the document.
    let (jobs, document) = tokio::time::timeout(TEST_TIMEOUT, async {
        let mut jobs = Vec::new();
        for _ in 0..3 {
            let job = submit(&server, &ada.key, zip_dir(&fixture("passing"))).await;
            jobs.push(job["job_id"].as_str().expect("a job id").to_owned());
        }
        ran(&db).await;
        let document: serde_json::Value = client()
            .get(server.at(DOCUMENT))
            .send()
            .await
            .expect("GET /api/v1/openapi.json")
            .json()
            .await
            .expect("the document is JSON");
        (jobs, document)
    })
    .await
    .expect("the server answered within the time limit");

    // Every operation schemathesis is to test: all but the stream, and but the document itself
    // (schemathesis leaves out the operation that serves the document it reads).
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        if path.ends_with(EXCLUDED) || path == DOCUMENT {
            continue;
        }
        for method in item.as_object().expect("a path item").keys() {
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(operations.len() >= 13, "{operations:?}");

    // In a folder of its own: schemathesis writes nothing into the repository.
    let scratch = tempfile::tempdir().expect("temp dir");
    let report = scratch.path().join("junit.xml");
    // Half of the generated ids and names are ones that exist, so that operations reach more
    // than their 404.
    let config = scratch.path().join("schemathesis.toml");
    std::fs::write(&config, known_values(&jobs, &ada.key)).expect("write the schemathesis config");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.at(DOCUMENT))
        .args(["--url", &server.url])
        .args(["--header", &format!("Authorization: Bearer {}", ada.key)])
        .args(["--checks", CHECKS])
        .args(["--exclude-path-regex", &format!("{EXCLUDED}$")])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        // Generating data slowly on a busy machine is not the server's fault.
        .args(["--suppress-health-check", "too_slow"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report)
        .arg("--no-color")
        .env("NO_COLOR", "1");
    let run = Proc::spawn("schemathesis", cmd).finish(RUN_LIMIT);
    assert_eq!(
        run.code,
        Some(0),
        "schemathesis found answers that do not match the OpenAPI document (exit {:?}; \
         reproduce with the curl commands below, or against a server of your own as the README \
         says):\n--- stdout:\n{}\n--- stderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    // It tested every operation it was to test.
    let report = std::fs::read_to_string(&report).expect("schemathesis's JUnit report");
    let untested: Vec<&String> = operations
        .iter()
        .filter(|op| !report.contains(&format!("<testcase name=\"{op}\"")))
        .collect();
    assert!(
        untested.is_empty(),
        "schemathesis did not test {untested:?}:\n{}",
        run.stdout
    );
}
