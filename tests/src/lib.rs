//! The end-to-end harness: real binaries as processes, a real SQLite file in a temp directory,
//! the real Docker daemon, real HTTP and SSE; and throwaway PostgreSQL clusters ([`postgres`]).
//!
//! Binaries are taken from the cargo target directory (`cargo build --workspace --bins` first;
//! the README's test command does that).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ci_common::db::{self, api_keys, users, DatabaseUrl, Db, SqlitePool};
use ci_common::keys::SecretKey;
use ci_common::UserId;

pub use ci_common;

pub mod browser;
pub mod docker_engine;
pub mod tls;
pub mod webhook_receiver;
pub use ci_common::testing::postgres;

pub use postgres::Postgres;

/// How long a test waits for any one condition before failing.
pub const WAIT: Duration = Duration::from_secs(120);

/// The runner image the Docker tests use (built by `scripts/build-runner-image.sh`).
pub fn test_image() -> String {
    std::env::var("CI_TEST_IMAGE").unwrap_or_else(|_| "ci-runner:bookworm".to_owned())
}

/// The runner image without any user for uid 1000 (built by `scripts/build-test-images.sh`).
pub fn test_image_nopasswd() -> String {
    std::env::var("CI_TEST_IMAGE_NOPASSWD")
        .unwrap_or_else(|_| "ci-runner:bookworm-nopasswd".to_owned())
}

/// Path of one of the workspace's binaries (`ci`, `ci-server`, `ci-controller`, `ci-admin`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // Tests live in target/<profile>/deps/, binaries (such as ci-bench) in target/<profile>/.
    let mut dir = exe.parent().expect("target/<profile>");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A fixture project from `pytest-fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("pytest-fixtures").join(name);
    assert!(path.is_dir(), "no fixture {}", path.display());
    path
}

/// Fails the test unless Docker answers. Tests never skip for lack of Docker.
pub fn require_docker() {
    assert!(
        docker_succeeds(&["info", "--format", "{{.ServerVersion}}"]),
        "Docker is not reachable: this test needs the Docker daemon (scripts/ensure-docker.sh)"
    );
    let image = test_image();
    assert!(
        docker_succeeds(&["image", "inspect", &image]),
        "the runner image {image} is missing: run scripts/build-runner-image.sh"
    );
}

/// Whether `docker ARGS` exits 0 (its output is discarded).
fn docker_succeeds(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database the binaries are told to use: the path of an SQLite file (`--db-path`), a
/// [`DatabaseUrl`] of either backend (`--database-url`), or a [`TestDb`].
pub trait DbArg {
    /// The flags that name the database.
    fn db_args(&self) -> Vec<std::ffi::OsString>;
}

impl DbArg for &Path {
    fn db_args(&self) -> Vec<std::ffi::OsString> {
        vec!["--db-path".into(), self.as_os_str().to_owned()]
    }
}

impl DbArg for &PathBuf {
    fn db_args(&self) -> Vec<std::ffi::OsString> {
        self.as_path().db_args()
    }
}

impl DbArg for &DatabaseUrl {
    fn db_args(&self) -> Vec<std::ffi::OsString> {
        vec!["--database-url".into(), self.url_with_password().into()]
    }
}

impl DbArg for &TestDb {
    fn db_args(&self) -> Vec<std::ffi::OsString> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => path.db_args(),
            url => url.db_args(),
        }
    }
}

/// Environment variable choosing the backend of [`TestDb::new`]: `postgres` for a fresh database
/// on the process's throwaway PostgreSQL cluster, else (unset or `sqlite`) an SQLite file.
/// `scripts/test.sh` runs the end-to-end suite once more with it set to `postgres`.
pub const TEST_DATABASE_ENV: &str = "CI_TEST_DATABASE";

/// A test's fresh database, SQLite or PostgreSQL ([`TEST_DATABASE_ENV`]), in a temporary
/// directory that also serves as the test's scratch space.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    /// Where an SQLite database's file is (`dir/ci.db`); nothing there on PostgreSQL.
    pub path: PathBuf,
    /// What the binaries are given ([`DbArg`] for `&TestDb`).
    pub url: DatabaseUrl,
    /// The open database, for the layer's functions (`&db.pool` is an executor).
    pub pool: Db,
}

impl TestDb {
    /// A fresh database of the backend [`TEST_DATABASE_ENV`] names.
    pub async fn new() -> Self {
        match std::env::var(TEST_DATABASE_ENV).as_deref() {
            Ok("postgres") => Self::postgres().await,
            Ok("sqlite") | Err(_) => Self::sqlite().await,
            Ok(other) => panic!("{TEST_DATABASE_ENV}={other:?}: use sqlite or postgres"),
        }
    }

    /// A fresh SQLite database, whatever [`TEST_DATABASE_ENV`] says (for tests of what only
    /// SQLite has: its file, its lock file, the prototype's import).
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ci.db");
        let pool = db::connect(&path, 4).await.expect("database");
        Self {
            url: DatabaseUrl::Sqlite(path.clone()),
            dir,
            path,
            pool: Db::Sqlite(pool),
        }
    }

    /// A fresh database on the process's throwaway PostgreSQL cluster ([`Postgres::shared`]).
    pub async fn postgres() -> Self {
        assert!(
            postgres::available(),
            "PostgreSQL's server is not installed: run scripts/ensure-postgres.sh"
        );
        Self::postgres_on(Postgres::shared()).await
    }

    /// A fresh database on the cluster `pg` (e.g. a durable one, for benchmarks).
    pub async fn postgres_on(pg: &Postgres) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ci.db");
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let url: DatabaseUrl = pg.fresh_database(&name).parse().expect("a PostgreSQL URL");
        let settings = db::PostgresSettings {
            max_connections: 4,
            statement_timeout: None,
        };
        let pool = Db::open(&url, &settings)
            .await
            .expect("the PostgreSQL database");
        Self {
            dir,
            path,
            url,
            pool,
        }
    }

    /// The SQLite pool (panics on PostgreSQL: for tests that only run on SQLite).
    pub fn sqlite_pool(&self) -> &SqlitePool {
        match &self.pool {
            Db::Sqlite(pool) => pool,
            Db::Postgres(_) => panic!("this test needs an SQLite database (TestDb::sqlite)"),
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Db::Postgres(_))
    }

    /// Creates a user with one API key (straight through the database layer).
    pub async fn user(&self, name: &str) -> TestUser {
        let email = format!("{}@example.com", name.to_lowercase());
        let user = users::create(&self.pool, name, &email)
            .await
            .expect("create user");
        let key = SecretKey::generate();
        api_keys::create(&self.pool, user.id, "test", &key, None)
            .await
            .expect("create key");
        TestUser {
            id: user.id,
            email,
            key: key.expose().to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: UserId,
    pub email: String,
    pub key: String,
}

/// A child process that is killed when dropped. Its stdout and stderr are collected separately,
/// and every line is also copied to the test's stderr (prefixed with its name) and offered to
/// [`Proc::wait_for_line`].
pub struct Proc {
    pub name: String,
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// What a finished process printed, and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails the test with both outputs unless the process exited with `code` (and did not
    /// panic).
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "exited {:?}, expected {code}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "panicked:\n{}",
            self.stderr
        );
        self
    }
}

impl Proc {
    /// Starts `cmd` with its output piped and collected.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let streams: [(Box<dyn std::io::Read + Send>, _, String); 2] = [
            (
                Box::new(child.stdout.take().unwrap()),
                stdout.clone(),
                name.to_owned(),
            ),
            (
                Box::new(child.stderr.take().unwrap()),
                stderr.clone(),
                format!("{name} stderr"),
            ),
        ];
        let readers = streams
            .into_iter()
            .map(|(stream, sink, label)| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut bytes = Vec::new();
                    while reader.read_until(b'\n', &mut bytes).is_ok_and(|n| n > 0) {
                        let line = String::from_utf8_lossy(&bytes);
                        eprint!("[{label}] {line}");
                        sink.lock().unwrap().push_str(&line);
                        let _ = tx.send(line.trim_end().to_owned());
                        bytes.clear();
                    }
                })
            })
            .collect();
        Self {
            name: name.to_owned(),
            child,
            lines,
            stdout,
            stderr,
            readers,
        }
    }

    /// Waits for an output line (stdout or stderr) containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_lines(&[needle], timeout).remove(0)
    }

    /// Waits until lines containing each of `needles` were printed, in any order (stdout and
    /// stderr are read apart, so a line on one may arrive before an earlier line on the other),
    /// and returns them in the order of `needles`.
    pub fn wait_for_lines(&mut self, needles: &[&str], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        loop {
            if found.iter().all(Option::is_some) {
                return found.into_iter().flatten().collect();
            }
            let missing: Vec<&str> = needles
                .iter()
                .zip(&found)
                .filter(|(_, line)| line.is_none())
                .map(|(needle, _)| *needle)
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = needles
                        .iter()
                        .zip(&found)
                        .position(|(needle, seen)| seen.is_none() && line.contains(needle))
                    {
                        found[at] = Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} printed no line containing {missing:?} within {timeout:?}\n--- stderr:\n{}",
                    self.name,
                    self.stderr.lock().unwrap()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{} exited ({status:?}) before printing {missing:?}\n--- stderr:\n{}",
                        self.name,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. "TERM", "INT", "KILL").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit (up to `timeout`) and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {timeout:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                    self.name,
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (killing it and failing after `timeout`) and returns all it
    /// printed.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let status = self.wait_exit(timeout);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Output {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `ci-server` prints once it listens, up to its URL: `ci-server listening on http://ADDR`.
pub const SERVER_LISTENING: &str = "listening on http://";

/// The URL at the end of a line a server printed once it listened (`ci-server listening on
/// http://127.0.0.1:41234`, `metrics on http://...`), or `None` when the line holds none.
pub fn listening_url(line: &str) -> Option<String> {
    line.find("http://").map(|at| line[at..].trim().to_owned())
}

/// A running `ci-server` on 127.0.0.1 with an OS-assigned port.
pub struct Server {
    pub proc: Proc,
    pub url: String,
}

impl Server {
    pub fn start(db: impl DbArg) -> Self {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: impl DbArg, args: &[&str]) -> Self {
        Self::spawn(Self::command(db, args))
    }

    /// The command of a server on 127.0.0.1, on a port the OS picks, serving `db`, with `args`.
    pub fn command(db: impl DbArg, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("ci-server"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(db.db_args())
            .args(args)
            .env("RUST_LOG", "info");
        cmd
    }

    /// Starts a `ci-server` command and waits until it listens (it must be told `--port 0` or a
    /// free port).
    pub fn spawn(cmd: Command) -> Self {
        let mut proc = Proc::spawn("ci-server", cmd);
        let line = proc.wait_for_line(SERVER_LISTENING, WAIT);
        let url = listening_url(&line).expect("the listening line names the URL");
        Self { proc, url }
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

/// A running `ci-controller` with its own container prefix; its containers and volumes are
/// removed when it is dropped.
pub struct Controller {
    pub proc: Proc,
    pub prefix: String,
    keep_caches: bool,
}

impl Controller {
    pub fn start(db: impl DbArg) -> Self {
        Self::start_with(db, &[])
    }

    pub fn start_with(db: impl DbArg, args: &[&str]) -> Self {
        let prefix = format!(
            "citest-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        Self::start_with_prefix(db, &prefix, args)
    }

    /// Starts a controller with a given prefix (to take over from a killed one).
    pub fn start_with_prefix(db: impl DbArg, prefix: &str, args: &[&str]) -> Self {
        require_docker();
        let mut cmd = Command::new(bin("ci-controller"));
        cmd.args(db.db_args())
            .args([
                "--image",
                &test_image(),
                "--container-prefix",
                prefix,
                "--interval",
                "0.05",
            ])
            .args(args)
            .env("RUST_LOG", "info");
        let mut proc = Proc::spawn("ci-controller", cmd);
        proc.wait_for_line("controller ready", WAIT);
        Self {
            proc,
            prefix: prefix.to_owned(),
            keep_caches: false,
        }
    }

    /// Leaves the dependency and pip cache volumes of this controller's prefix in place when it
    /// is dropped (for a controller replaced by another with the same prefix).
    pub fn keep_caches(&mut self) {
        self.keep_caches = true;
    }

    /// Names of Docker containers carrying this controller's prefix label.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=ci.prefix={}", self.prefix),
            "--format",
            "{{.Names}}",
        ])
    }

    /// Names of Docker volumes carrying this controller's prefix label.
    pub fn volumes(&self) -> Vec<String> {
        docker_lines(&[
            "volume",
            "ls",
            "--filter",
            &format!("label=ci.prefix={}", self.prefix),
            "--format",
            "{{.Name}}",
        ])
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        if self.keep_caches {
            remove_job_leftovers(&self.prefix);
        } else {
            remove_prefix_leftovers(&self.prefix);
        }
    }
}

/// Removes every container and volume labelled with `prefix`, the dependency and pip caches
/// included (test cleanup).
pub fn remove_prefix_leftovers(prefix: &str) {
    sweep_leftovers(prefix, true);
}

/// Removes the containers and job volumes labelled with `prefix`, leaving its caches.
pub fn remove_job_leftovers(prefix: &str) {
    sweep_leftovers(prefix, false);
}

fn sweep_leftovers(prefix: &str, caches: bool) {
    // A killed controller may have left a Docker request in flight (a volume or container being
    // created) that lands after a first sweep, so sweep until two sweeps in a row find nothing.
    let label = format!("label=ci.prefix={prefix}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut quiet = 0;
    while quiet < 2 && Instant::now() < deadline {
        let containers = docker_lines(&["ps", "-aq", "--filter", &label]);
        if !containers.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&containers)
                .output();
        }
        // The job volumes, and the dependency and pip caches (they outlive jobs, so they carry
        // their own labels).
        let mut volumes = docker_lines(&["volume", "ls", "-q", "--filter", &label]);
        if caches {
            for cache_label in [
                format!("label=ci.cache={prefix}"),
                format!("label=ci.pip_cache={prefix}"),
            ] {
                volumes.extend(docker_lines(&[
                    "volume",
                    "ls",
                    "-q",
                    "--filter",
                    &cache_label,
                ]));
            }
        }
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
        if containers.is_empty() && volumes.is_empty() {
            quiet += 1;
            std::thread::sleep(Duration::from_millis(200));
        } else {
            quiet = 0;
        }
    }
}

/// Runs `docker ARGS` and returns its non-empty stdout lines.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Zips a directory (every file, paths relative to it) into memory.
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .expect("read fixture dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if name.contains("__pycache__") || name.contains(".pytest_cache") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                writer.start_file(name, options).expect("zip entry");
                writer
                    .write_all(&std::fs::read(&path).expect("read file"))
                    .expect("zip write");
            }
        }
    }
    writer.finish().expect("zip finish").into_inner()
}

/// One SSE event as a client sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: serde_json::Value,
}

/// Reads an SSE response until it ends (or `stop` says so), with the harness timeout.
pub async fn read_sse(response: reqwest::Response, mut stop: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream().eventsource();
    let mut out = Vec::new();
    let read = async {
        while let Some(event) = stream.next().await {
            let event = event.expect("valid SSE");
            let data = serde_json::from_str(&event.data)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", event.data));
            let sse = Sse {
                id: event.id,
                event: event.event,
                data,
            };
            let done = stop(&sse);
            out.push(sse);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("SSE stream timed out");
    out
}

/// A reqwest client with a bearer key.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("http client")
}

/// Uploads `zip` as a new job with the v1 API and returns the job JSON (panics unless 201).
pub async fn submit(server: &Server, key: &str, zip: Vec<u8>) -> serde_json::Value {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("project.zip"),
    );
    let response = client()
        .post(server.at("/api/v1/jobs"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .expect("submit");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(status, 201, "submit failed: {body}");
    body
}

/// Follows a job's events from the beginning until its `complete` event.
pub async fn follow(server: &Server, key: &str, job_id: &str) -> Vec<Sse> {
    let response = client()
        .get(server.at(&format!("/api/v1/jobs/{job_id}/events")))
        .bearer_auth(key)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    read_sse(response, |e| e.event == "complete").await
}

/// The `data` text of every `log` event, in order.
pub fn log_lines(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.data["type"] == "log")
        .map(|e| e.data["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}
