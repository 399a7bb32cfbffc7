//! Helpers for the `client_*` tests: run the real `ci` binary with a clean environment (its own
//! HOME and config file, no CI_* variables from the caller), with a timeout, and read what it
//! printed. Included by each `client_*` test file with `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ci_tests::ci_common::api::JobView;
use ci_tests::ci_common::JobStatus;
use ci_tests::{bin, client, Controller, Proc, Server, TestDb, TestUser, WAIT};

/// How long one `ci` command may take (a job runs in Docker: install + pytest).
pub const CI_TIMEOUT: Duration = Duration::from_secs(180);

/// A home folder and config file for `ci`, isolated from the machine's.
pub struct CiEnv {
    pub home: tempfile::TempDir,
}

impl Default for CiEnv {
    fn default() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp home"),
        }
    }
}

impl CiEnv {
    pub fn new() -> Self {
        Self::default()
    }

    /// `~/.ci/config` inside the temporary home.
    pub fn config_path(&self) -> PathBuf {
        self.home.path().join(".ci").join("config")
    }

    pub fn write_config(&self, text: &str) {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `ci ARGS` with nothing set but HOME (and NO_COLOR): callers add the server and key.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("ci"));
        cmd.args(args)
            .env_remove("CI_SERVER_URL")
            .env_remove("CI_API_KEY")
            .env_remove("CI_CONFIG")
            .env("HOME", self.home.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// `ci ARGS` against `server_url` as `key` (both from the environment), in `dir`.
    pub fn ci(&self, server_url: &str, key: &str, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(args);
        cmd.env("CI_SERVER_URL", server_url)
            .env("CI_API_KEY", key)
            .current_dir(dir);
        cmd
    }
}

/// What a finished `ci` printed, and how it exited.
pub type Out = ci_tests::Output;

/// A running `ci` (the harness's process wrapper under the name the client tests use).
pub struct CiProc(Proc);

impl CiProc {
    pub fn spawn(cmd: Command) -> Self {
        Self(Proc::spawn("ci", cmd))
    }

    /// Waits for a line (on stdout or stderr) containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.0.wait_for_line(needle, timeout)
    }

    /// Sends a signal ("INT", "TERM", ...).
    pub fn signal(&self, signal: &str) {
        self.0.signal(signal)
    }

    /// Waits for `ci` to exit (killing it after `timeout`) and returns what it printed.
    pub fn finish(self, timeout: Duration) -> Out {
        self.0.finish(timeout)
    }
}

/// Runs `cmd` to completion (with `CI_TIMEOUT`).
pub fn run(cmd: Command) -> Out {
    CiProc::spawn(cmd).finish(CI_TIMEOUT)
}

/// A database (of the backend `TestDb::new` chooses, unless given one: [`Stack::start_on`])
/// with a user, one server replica and a controller.
pub struct Stack {
    pub db: TestDb,
    pub server: Server,
    pub controller: Controller,
    pub ada: TestUser,
    pub env: CiEnv,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_on(TestDb::new().await).await
    }

    /// The stack on `db`.
    pub async fn start_on(db: TestDb) -> Self {
        let ada = db.user("ada").await;
        let server = Server::start(&db);
        let controller = Controller::start(&db);
        Self {
            db,
            server,
            controller,
            ada,
            env: CiEnv::new(),
        }
    }

    /// `ci ARGS` as ada against the server, in `dir`.
    pub fn ci(&self, dir: &Path, args: &[&str]) -> Command {
        self.env.ci(&self.server.url, &self.ada.key, dir, args)
    }

    /// `ci submit --async` as ada in `dir`; returns the job id it printed.
    pub fn submit_async(&self, dir: &Path) -> String {
        let out = run(self.ci(dir, &["submit", "--async"])).expect_code(0);
        job_id_in(out.stdout.trim())
    }
}

/// `GET /api/v1/jobs/{id}` as `key`.
pub async fn job_view(server_url: &str, key: &str, id: &str) -> JobView {
    client()
        .get(format!("{server_url}/api/v1/jobs/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET job")
        .error_for_status()
        .expect("GET job status")
        .json()
        .await
        .expect("job JSON")
}

/// Polls the API until the job is in a terminal state.
pub async fn wait_until_finished(server_url: &str, key: &str, id: &str) -> JobView {
    ci_tests::wait_for("the job to finish", WAIT, || async {
        let job = job_view(server_url, key, id).await;
        job.status.is_terminal().then_some(job)
    })
    .await
}

/// The job id in a `Job ID: <id>` or `Job submitted: <id>` line.
pub fn job_id_in(line: &str) -> String {
    let id = line.rsplit(' ').next().unwrap().trim().to_owned();
    assert!(id.parse::<uuid::Uuid>().is_ok(), "no job id in {line:?}");
    id
}

pub fn is_terminal(status: JobStatus) -> bool {
    status.is_terminal()
}

/// Checks what `ci submit` of the `slow_lines` fixture printed when its stream was cut (`why`)
/// and it went on from another replica: it said it reconnected, the job passed, and every one of
/// the 25 ticks is on stdout once, in order.
pub fn assert_followed_every_tick(out: &Out, job: &str, why: &str) {
    assert!(
        out.stderr.contains("reconnecting"),
        "{why}:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("Job {job} passed")),
        "{}",
        out.stderr
    );
    let ticks: Vec<&str> = out
        .stdout
        .lines()
        // pytest prints the first tick after the test file's name, on the same line.
        .filter_map(|l| l.find("tick ").map(|at| &l[at..]))
        .collect();
    let expected: Vec<String> = (1..=25).map(|n| format!("tick {n}")).collect();
    assert_eq!(
        ticks, expected,
        "every line once, in order:\n{}",
        out.stdout
    );
}

/// Follows slow_lines through `replicas` replicas (at least 2) of one database, cuts the first
/// with `cut` after a few lines, and checks that every line was printed exactly once, as
/// `ci wait --all` prints it from the second. On either backend.
pub async fn follow_across_a_cut(db: &TestDb, replicas: usize, cut: impl FnOnce(&mut Server)) {
    assert!(replicas >= 2);
    let ada = db.user("ada").await;
    let mut all_replicas: Vec<Server> = (0..replicas).map(|_| Server::start(db)).collect();
    let _controller = Controller::start(db);
    let env = CiEnv::new();
    let servers = all_replicas
        .iter()
        .map(|r| r.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let replica1 = &mut all_replicas[0];
    let here = ci_tests::fixture("slow_lines");

    let mut ci = CiProc::spawn(env.ci(&servers, &ada.key, &here, &["submit", "test"]));
    let id = job_id_in(&ci.wait_for_line("Job ID: ", CI_TIMEOUT));
    ci.wait_for_line("tick 3", CI_TIMEOUT);
    cut(replica1);

    let out = ci.finish(CI_TIMEOUT).expect_code(0);
    assert_followed_every_tick(&out, &id, "the cut was noticed");

    // The whole log, read afterwards from the surviving replica, is what was printed live.
    let replica2 = &all_replicas[1];
    let all = run(env.ci(&replica2.url, &ada.key, &here, &["wait", &id, "--all"])).expect_code(0);
    assert_eq!(out.stdout, all.stdout);
}
