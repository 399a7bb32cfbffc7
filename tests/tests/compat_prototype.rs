//! The Python prototype's users, unchanged, against a real server and controller: a script that
//! speaks its protocol as its client did (`tests/prototype/client.py`, with `requests`) submits
//! real projects, prints their logs as that client printed them, and polls `GET /jobs/{id}` for
//! the prototype's final words, as its users' scripts did.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ci_tests::{
    client, fixture, follow, log_lines, repo_root, Controller, Output, Proc, Server, TestDb,
    TestUser,
};

/// How long one run of the script may take (a job runs in Docker).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// A server, a controller and a user with a key.
struct Stack {
    _db: TestDb,
    server: Server,
    _controller: Controller,
    ada: TestUser,
}

impl Stack {
    async fn start() -> Self {
        require_requests();
        let db = TestDb::new().await;
        let ada = db.user("Ada").await;
        let server = Server::start(&db);
        let controller = Controller::start(&db);
        Self {
            _db: db,
            server,
            _controller: controller,
            ada,
        }
    }

    /// Runs `client.py SERVER KEY ARGS` to its end.
    fn prototype(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("python3");
        cmd.arg(script())
            .arg(&self.server.url)
            .arg(&self.ada.key)
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        Proc::spawn("prototype client", cmd).finish(SCRIPT_TIMEOUT)
    }

    /// `submit-async` of a fixture; the job id it printed.
    fn submit_async(&self, dir: &Path) -> String {
        let out = self
            .prototype(&["submit-async", dir.to_str().unwrap()])
            .expect_code(0);
        let id = out
            .stdout
            .trim()
            .strip_prefix("Job submitted: ")
            .unwrap_or_else(|| panic!("no job id in {:?}", out.stdout));
        id.to_owned()
    }

    /// Polls `GET /jobs/{id}` as the prototype's users did, until its status is `completed`,
    /// `failed` or `cancelled`; the job's JSON then.
    fn poll(&self, id: &str) -> serde_json::Value {
        let out = self.prototype(&["poll", id, "150"]).expect_code(0);
        serde_json::from_str(out.stdout.trim()).expect("the job's JSON")
    }

    /// The job as `/api/v1/jobs/{id}` shows it.
    async fn v1_job(&self, id: &str) -> serde_json::Value {
        client()
            .get(self.server.at(&format!("/api/v1/jobs/{id}")))
            .bearer_auth(&self.ada.key)
            .send()
            .await
            .expect("GET job")
            .json()
            .await
            .expect("job JSON")
    }

    /// The job's log lines, as the v1 API stores them (without newlines).
    async fn v1_log(&self, id: &str) -> Vec<String> {
        log_lines(&follow(&self.server, &self.ada.key, id).await)
    }
}

fn script() -> PathBuf {
    repo_root()
        .join("tests")
        .join("prototype")
        .join("client.py")
}

/// Fails (never skips) unless `python3` with `requests` is there, as the prototype's client
/// needs it.
fn require_requests() {
    let ok = Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test needs python3 with `requests` (the prototype's client library): \
         apt-get install python3-requests, or pip install requests"
    );
}

/// The job id in the `Job ID: <id>` line the streaming submit printed on stderr.
fn job_id(out: &Output) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("Job ID: "))
        .unwrap_or_else(|| panic!("no job id on stderr:\n{}", out.stderr))
        .trim()
        .to_owned()
}

/// The log as the prototype's client printed it: each line on its own line.
fn printed(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn assert_line_starts(stdout: &str, start: &str) {
    assert!(
        stdout.lines().any(|l| l.starts_with(start)),
        "no line starting with {start:?} in:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_streaming_submit_prints_the_log_line_by_line() {
    let stack = Stack::start().await;
    let out = stack
        .prototype(&["submit", fixture("passing").to_str().unwrap()])
        .expect_code(0);
    assert!(
        out.stderr
            .contains("content-type: text/event-stream; charset=utf-8"),
        "{}",
        out.stderr
    );
    let id = job_id(&out);
    assert_line_starts(&out.stdout, "tests/test_basic.py::test_addition PASSED");
    assert_line_starts(&out.stdout, "tests/test_basic.py::test_string PASSED");
    assert_line_starts(&out.stdout, "==");
    let lines = stack.v1_log(&id).await;
    assert!(lines.len() > 5, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.ends_with('\n')),
        "v1 lines: {lines:?}"
    );
    assert_eq!(out.stdout, printed(&lines), "one printed line per log line");

    // `ci list` and `GET /jobs/{id}` in the prototype's words.
    let listed = stack.prototype(&["list"]).expect_code(0);
    let jobs: serde_json::Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    let job = &jobs.as_array().unwrap()[0];
    assert_eq!(job["job_id"], id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["success"], true);
    assert!(job["start_time"].is_string() && job["end_time"].is_string());
    let shown = stack.poll(&id);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["success"], true);
    assert_eq!(stack.v1_job(&id).await["status"], "passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_async_jobs_ends_with_the_prototypes_words() {
    let stack = Stack::start().await;
    let passing = stack.submit_async(&fixture("passing"));
    let failing = stack.submit_async(&fixture("failing"));
    let broken = stack.submit_async(&fixture("syntax_error"));

    for (id, status, success, v1) in [
        (&passing, "completed", true, "passed"),
        (&failing, "completed", false, "failed"),
        (&broken, "failed", false, "error"),
    ] {
        let job = stack.poll(id);
        assert_eq!(job["status"], status, "{job}");
        assert_eq!(job["success"], success, "{job}");
        assert_eq!(stack.v1_job(id).await["status"], v1);
    }

    // `ci wait --all`: the whole log, line by line, and exit 1 for tests that failed.
    let out = stack.prototype(&["wait", &failing, "--all"]).expect_code(1);
    assert_line_starts(&out.stdout, "tests/test_math.py::test_passes PASSED");
    assert_line_starts(&out.stdout, "tests/test_math.py::test_fails FAILED");
    assert!(out.stdout.contains("assert 1 + 1 == 3"), "{}", out.stdout);
    assert_eq!(out.stdout, printed(&stack.v1_log(&failing).await));
    // `ci wait` (only new output) on a job that ended: the prototype's one line.
    let out = stack.prototype(&["wait", &failing]).expect_code(1);
    assert_eq!(out.stdout, "Job already completed.\n");
    let out = stack.prototype(&["wait", &broken, "--all"]).expect_code(1);
    assert!(out.stdout.contains("SyntaxError"), "{}", out.stdout);
    let out = stack.prototype(&["wait", &passing, "--all"]).expect_code(0);
    assert_line_starts(&out.stdout, "tests/test_basic.py::test_string PASSED");

    let listed = stack.prototype(&["list"]).expect_code(0);
    let jobs: serde_json::Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    let words: Vec<_> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job_id"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        words,
        [
            (broken.as_str(), "failed"),
            (failing.as_str(), "completed"),
            (passing.as_str(), "completed"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_output_arrives_intact() {
    let stack = Stack::start().await;
    let out = stack
        .prototype(&["submit", fixture("unicode_long_lines").to_str().unwrap()])
        .expect_code(0);
    let id = job_id(&out);
    // The same lines through the v1 stream, which carries UTF-8 as is: read with `requests`
    // too, it decodes as the declared charset says.
    let v1 = stack.prototype(&["events", &id]).expect_code(0);
    assert!(
        v1.stderr
            .contains("content-type: text/event-stream; charset=utf-8"),
        "{}",
        v1.stderr
    );
    for stdout in [&out.stdout, &v1.stdout] {
        for expected in [
            "unicode: café naïve über ✓ Ωμέγα",
            "emoji: 😀 🚀 🧪 👩‍💻",
            "cjk: 你好，世界 こんにちは 안녕하세요",
            "after invalid bytes",
        ] {
            // (pytest prints the test's name before the first line, on the same line)
            assert!(
                stdout.lines().any(|l| l.ends_with(expected)),
                "no line ending with {expected:?} in:\n{stdout}"
            );
        }
    }
    assert_eq!(out.stdout, printed(&stack.v1_log(&id).await));
    assert_eq!(out.stdout, v1.stdout);
}
