//! The system under test: `ci-server` replicas and one `ci-controller` on a fresh temp database,
//! their memory, and the Docker events of the controller's containers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use ci_tests::ci_common::db::DatabaseUrl;
use ci_tests::{bin, listening_url, remove_prefix_leftovers, DbArg, TestDb, SERVER_LISTENING};
use tokio::io::AsyncBufReadExt;

/// How long a binary may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process whose output goes to a log file; killed when dropped.
pub struct Service {
    pub name: String,
    child: Child,
    lines: Mutex<Option<mpsc::Receiver<String>>>,
    pub log_path: PathBuf,
}

impl Service {
    fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Self> {
        // The benchmark measures the defaults: no CI_* setting of the caller leaks in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CI_") {
                cmd.env_remove(key);
            }
        }
        let log_level = std::env::var("CI_BENCH_RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        cmd.env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let log_path = log_dir.join(format!("{name}-{}.log", child.id()));
        let file = Arc::new(Mutex::new(
            std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?,
        ));
        let (tx, rx) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let file = Arc::clone(&file);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            lines: Mutex::new(Some(rx)),
            log_path,
        })
    }

    /// Waits for an output line containing `needle`, then stops collecting lines (the log file
    /// keeps them).
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let rx = self
            .lines
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .context("output already consumed")?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "{} printed no line containing {needle:?} within {timeout:?} (log: {})",
                    self.name,
                    self.log_path.display()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!(
                        "{} exited ({status:?}) before printing {needle:?}; its output:\n{}",
                        self.name,
                        self.tail(30)
                    )
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of its output.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// (VmRSS, VmHWM) in MB.
    pub fn memory_mb(&self) -> Result<Memory> {
        memory_of(self.pid())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in MB (10^6 bytes).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss: f64,
    pub peak: f64,
}

pub fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot parse {line:?}"))?;
        Ok(kb * 1024.0 / 1e6)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// A running `ci-server` replica.
pub struct ServerProc {
    pub proc: Service,
    pub url: String,
}

/// The controller; its containers and volumes are removed when it is dropped.
pub struct ControllerProc {
    pub proc: Service,
    pub prefix: String,
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        remove_prefix_leftovers(&self.prefix);
    }
}

/// Everything one scenario runs against. Fields drop in order: controller (and its containers),
/// servers, then the database directory.
pub struct Stack {
    pub controller: ControllerProc,
    pub servers: Vec<ServerProc>,
    pub db: TestDb,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub replicas: usize,
    pub database: Database,
    pub controller_args: Vec<String>,
    pub image: String,
    pub log_dir: PathBuf,
}

/// The backend a benchmark's database is on (`ci-bench --database`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    /// A fresh SQLite file, as the service uses by default.
    #[default]
    Sqlite,
    /// A fresh database on a PostgreSQL cluster of this process with durable settings
    /// (`fsync`, `synchronous_commit` and full page writes on, on disk), as a deployment has.
    Postgres,
}

impl Database {
    /// A fresh database of this backend.
    pub async fn fresh(self) -> TestDb {
        match self {
            Self::Sqlite => TestDb::sqlite().await,
            Self::Postgres => {
                static CLUSTER: std::sync::OnceLock<ci_tests::Postgres> =
                    std::sync::OnceLock::new();
                let pg = CLUSTER
                    .get_or_init(|| ci_tests::Postgres::start_with(ci_tests::postgres::DURABLE));
                TestDb::postgres_on(pg).await
            }
        }
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Self> {
        let db = options.database.fresh().await;
        let mut servers = Vec::new();
        for _ in 0..options.replicas.max(1) {
            let path = db.url.clone();
            let log_dir = options.log_dir.clone();
            servers.push(
                tokio::task::spawn_blocking(move || start_server(&path, &log_dir))
                    .await
                    .context("server start task")??,
            );
        }
        let prefix = format!(
            "cibench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let path = db.url.clone();
        let controller = {
            let prefix = prefix.clone();
            tokio::task::spawn_blocking(move || {
                start_controller(
                    &path,
                    &prefix,
                    &options.image,
                    &options.controller_args,
                    &options.log_dir,
                )
            })
            .await
            .context("controller start task")??
        };
        Ok(Self {
            controller,
            servers,
            db,
        })
    }

    pub fn server(&self, i: usize) -> &ServerProc {
        &self.servers[i.min(self.servers.len() - 1)]
    }

    pub fn prefix(&self) -> &str {
        &self.controller.prefix
    }

    /// Fails if the controller or a server has died.
    pub fn ensure_alive(&mut self) -> Result<()> {
        if !self.controller.proc.alive() {
            bail!(
                "ci-controller exited; its output:\n{}",
                self.controller.proc.tail(30)
            );
        }
        for s in &mut self.servers {
            if !s.proc.alive() {
                bail!("ci-server exited; its output:\n{}", s.proc.tail(30));
            }
        }
        Ok(())
    }
}

fn start_server(db: &DatabaseUrl, log_dir: &Path) -> Result<ServerProc> {
    let mut cmd = Command::new(bin("ci-server"));
    cmd.args(["--host", "127.0.0.1", "--port", "0"])
        .args(DbArg::db_args(&db));
    let mut proc = Service::spawn("ci-server", cmd, log_dir)?;
    let line = proc.wait_for_line(SERVER_LISTENING, READY_TIMEOUT)?;
    let url = listening_url(&line).with_context(|| format!("no URL in ci-server's {line:?}"))?;
    Ok(ServerProc { proc, url })
}

fn start_controller(
    db: &DatabaseUrl,
    prefix: &str,
    image: &str,
    extra: &[String],
    log_dir: &Path,
) -> Result<ControllerProc> {
    let mut cmd = Command::new(bin("ci-controller"));
    cmd.args(DbArg::db_args(&db))
        .args(["--image", image, "--container-prefix", prefix])
        .args(extra);
    let proc = Service::spawn("ci-controller", cmd, log_dir)?;
    // From here on the prefix's containers are cleaned up whatever happens.
    let mut controller = ControllerProc {
        proc,
        prefix: prefix.to_owned(),
    };
    controller
        .proc
        .wait_for_line("controller ready", READY_TIMEOUT)?;
    Ok(controller)
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A container `create` or `start` as Docker reported it.
#[derive(Clone, Debug)]
pub struct ContainerEvent {
    pub job_id: String,
    pub action: String,
    pub time_ns: u64,
}

/// `docker events` for one controller prefix, running in the background (killed on drop).
pub struct DockerEvents {
    child: tokio::process::Child,
    events: Arc<Mutex<Vec<ContainerEvent>>>,
}

impl DockerEvents {
    /// Starts listening; events since `since_ns` are included, so nothing between this call and
    /// the listener being ready is missed.
    pub fn start(prefix: &str, since_ns: u64) -> Result<Self> {
        let since = format!(
            "{}.{:09}",
            since_ns / 1_000_000_000,
            since_ns % 1_000_000_000
        );
        let mut child = tokio::process::Command::new("docker")
            .args([
                "events",
                "--since",
                &since,
                "--filter",
                &format!("label=ci.prefix={prefix}"),
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--filter",
                "event=start",
                "--format",
                "{{json .}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run docker events")?;
        let stdout = child.stdout.take().context("docker events stdout")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let job_id = event["Actor"]["Attributes"]["ci.job_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let action = event["Action"].as_str().unwrap_or_default().to_owned();
                let time_ns = event["timeNano"].as_u64().unwrap_or(0);
                if !job_id.is_empty() && time_ns > 0 {
                    if let Ok(mut events) = sink.lock() {
                        events.push(ContainerEvent {
                            job_id,
                            action,
                            time_ns,
                        });
                    }
                }
            }
        });
        Ok(Self { child, events })
    }

    /// The time of each job's first container `action` (`create`, `start`) seen so far.
    pub fn first(&self, action: &str) -> HashMap<String, u64> {
        let mut first: HashMap<String, u64> = HashMap::new();
        if let Ok(events) = self.events.lock() {
            for e in events.iter().filter(|e| e.action == action) {
                let t = first.entry(e.job_id.clone()).or_insert(e.time_ns);
                *t = (*t).min(e.time_ns);
            }
        }
        first
    }

    /// The first container start of each job seen so far.
    pub fn first_starts(&self) -> HashMap<String, u64> {
        self.first("start")
    }

    /// Waits until every job in `jobs` has a container start (or `timeout`).
    pub async fn wait_for_starts(
        &self,
        jobs: &[String],
        timeout: Duration,
    ) -> HashMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let first = self.first_starts();
            if jobs.iter().all(|j| first.contains_key(j)) || Instant::now() >= deadline {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for DockerEvents {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
