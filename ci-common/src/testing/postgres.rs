//! Throwaway PostgreSQL clusters for tests and benchmarks: `initdb` in a fresh temp folder, the
//! server on a free port of 127.0.0.1, stopped and removed when the [`Postgres`] is dropped.
//!
//! The server is Debian's (`scripts/ensure-postgres.sh` installs it; the highest major under
//! `/usr/lib/postgresql/*/bin` is used). Without it [`available`] fails the test under
//! `CI=true` and elsewhere returns false, saying so, so that the test can skip.
//!
//! Starting a cluster costs about a second (mostly `initdb`); a database on a running one costs
//! about 50 ms. So a test takes a [`Postgres::fresh_database`] of its own on the process's
//! cluster, [`Postgres::shared`], rather than a cluster of its own. Clusters for tests live in
//! memory (/dev/shm); clusters with `fsync` on, for benchmarks, on disk (see
//! [`Postgres::start_with`]).
//!
//! Tests run as root, and PostgreSQL refuses to: as root the cluster's files and processes belong
//! to the user `postgres` (which Debian's package creates); as anyone else, to that one.
//!
//! Each cluster has a watchdog: a shell that waits for its standard input, a pipe from this
//! process, to close. When the process ends without dropping the cluster (a `static` such as
//! [`Postgres::shared`] is never dropped; a test killed by a signal is not either), the watchdog
//! stops the server and removes the folder. It ignores SIGHUP, SIGINT and SIGTERM, so Ctrl-C
//! and nextest's timeout leave it to do that; only SIGKILL of the whole process group leaves a
//! folder behind. A dropped cluster is stopped and removed by `Drop` itself, before it returns.

use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server programs a cluster needs, all in one bin folder.
const TOOLS: &[&str] = &["initdb", "pg_ctl", "postgres", "pg_isready", "psql"];

/// The superuser of every cluster (trusted from 127.0.0.1 and the cluster's socket: no password).
pub const USER: &str = "postgres";

/// The database [`Postgres::url`] names, created when the cluster starts.
pub const DATABASE: &str = "ci";

/// Settings for tests: nothing is flushed to disk (a crash loses the cluster, which a test's
/// cluster does not outlive anyway), and room for many pools at once.
pub const FAST: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
];

/// Settings that undo [`FAST`]'s shortcuts, for benchmarks that should see what a real
/// deployment pays for each commit: `Postgres::start_with(DURABLE)`.
pub const DURABLE: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
];

/// The bin folder of the highest major under `/usr/lib/postgresql` that has every tool.
pub fn bindir() -> Option<&'static Path> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let major: u32 = entry.file_name().to_str()?.parse().ok()?;
                    let bin = entry.path().join("bin");
                    TOOLS
                        .iter()
                        .all(|tool| bin.join(tool).is_file())
                        .then_some((major, bin))
                })
                .max_by_key(|(major, _)| *major)
                .map(|(_, bin)| bin)
        })
        .as_deref()
}

/// What to do when the server is not installed.
fn missing() -> String {
    "PostgreSQL's server is not installed (no /usr/lib/postgresql/<major>/bin with initdb, \
     pg_ctl, postgres, pg_isready and psql): run scripts/ensure-postgres.sh as root"
        .to_owned()
}

/// Whether PostgreSQL's server is installed. When it is not, this fails the test under
/// `CI=true` (scripts/test.sh installs it) and elsewhere returns false after saying so on
/// stderr, for the test to skip: `if !postgres::available() { return; }`.
pub fn available() -> bool {
    if bindir().is_some() {
        return true;
    }
    let what = missing();
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what}");
    eprintln!("SKIPPED (CI is not true): {what}");
    false
}

/// /dev/shm when it is a folder with 1 GiB free (Docker gives containers 64 MiB; a cluster takes
/// 40 MiB and each database 8 MiB more).
fn memory_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let out = Command::new("df").arg("-Pk").arg(shm).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let free_kib: u64 = text
            .lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()?;
        (out.status.success() && free_kib >= 1 << 20).then(|| shm.to_owned())
    })
    .clone()
}

/// The user a cluster's files and processes belong to.
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// The user `postgres`, from the user database.
fn postgres_user() -> Owner {
    let out = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .expect("getent passwd postgres");
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (fields.get(2), fields.get(3)) {
        (Some(uid), Some(gid)) if out.status.success() => Owner {
            uid: uid.parse().expect("uid of postgres"),
            gid: gid.parse().expect("gid of postgres"),
        },
        _ => panic!(
            "there is no user postgres, which the clusters run as when the tests run as root \
             (PostgreSQL refuses root): run scripts/ensure-postgres.sh as root"
        ),
    }
}

/// A free TCP port on 127.0.0.1 (free when this returns: the server may still lose a race for
/// it, and then [`Postgres::start_with`] tries another).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The last `lines` lines of the file at `path` (or why it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

/// The watchdog's script: `$1` is the cluster's folder; each line read is the server's pid. At
/// the end of its input (the test process dropped the cluster, exited or was killed) it stops
/// the server if that pid still owns the cluster, and removes the folder. Signals that end a
/// test run (Ctrl-C, a timeout's SIGTERM) leave it to do that.
const WATCHDOG: &str = r#"
trap '' HUP INT TERM
pid=
while read -r line; do pid=$line; done
lock="$1/data/postmaster.pid"
if [ -n "$pid" ] && read -r owner <"$lock" && [ "$owner" = "$pid" ]; then
  kill -QUIT "$pid"
  i=0
  while [ -e "$lock" ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
fi
rm -rf "$1"
"#;

/// A throwaway PostgreSQL cluster: its own folder, server and port. Dropping it stops the
/// server (immediate shutdown: open connections are cut) and removes the folder.
pub struct Postgres {
    bindir: PathBuf,
    owner: Option<Owner>,
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
    watchdog: Child,
}

impl Postgres {
    /// A new cluster with the [`FAST`] settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A new cluster with the [`FAST`] settings, each overridden or added to by `settings`
    /// (`postgresql.conf` names and values), e.g. [`DURABLE`].
    ///
    /// Where the cluster lives follows `fsync`: with it off (as in [`FAST`]) the cluster is in
    /// memory, in /dev/shm when that has room, where `initdb` and `CREATE DATABASE` take a
    /// half and a sixth of their time on this machine's disk; with it on (as in [`DURABLE`]) it
    /// is on disk, in `$TMPDIR`, as flushing memory would measure nothing.
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let bindir = bindir().unwrap_or_else(|| panic!("{}", missing()));
        let fsync = FAST
            .iter()
            .chain(settings)
            .rev()
            .find(|(name, _)| *name == "fsync")
            .map(|(_, value)| *value);
        let parent = match fsync {
            Some("off") => memory_dir().unwrap_or_else(std::env::temp_dir),
            _ => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("ci-pg-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("cannot make a temp dir in {}: {e}", parent.display()))
            .keep();
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "ci-pg-watchdog"])
            .arg(&dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                let _ = fs::remove_dir_all(&dir);
                panic!("cannot start the cluster's watchdog (sh): {e}")
            });
        let mut pg = Self {
            bindir: bindir.to_owned(),
            owner: None,
            dir,
            port: 0,
            server: None,
            watchdog,
        };
        // From here on a panic unwinds through Drop, which removes the folder. Whoever owns
        // what this process just created is this process's user.
        if fs::metadata(&pg.dir).expect("temp dir").uid() == 0 {
            pg.owner = Some(postgres_user());
        }
        if let Some(o) = pg.owner {
            std::os::unix::fs::chown(&pg.dir, Some(o.uid), Some(o.gid))
                .expect("give the cluster's folder to the user postgres");
        }
        pg.initdb();
        pg.serve(settings);
        pg.create_database(DATABASE);
        pg
    }

    /// One cluster for the whole test process, started by the first call. It is never dropped:
    /// its watchdog stops and removes it when the process exits. Give each test its own
    /// [`fresh_database`](Self::fresh_database) on it.
    ///
    /// Under `cargo nextest` every test is a process of its own, so this is a cluster per test
    /// (about a second each, as [`start`](Self::start)); under `cargo test` it is shared by the
    /// tests of one test binary, which run on threads. Either way a test gets an empty database
    /// of its own; sharing only saves time.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// `postgres://postgres@127.0.0.1:<port>/ci`: the database created with the cluster.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The URL of the database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates the empty database `name` (lowercase letters, digits and `_`, at most 63 bytes;
    /// unique on this cluster, such as the test's name) and returns its URL. It blocks for the
    /// time that takes (about 50 ms), which an async test can afford.
    pub fn fresh_database(&self, name: &str) -> String {
        self.create_database(name);
        self.url_of(name)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder: `data/` (the cluster), `postgres.log` (the server's output) and the
    /// server's Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's (postmaster's) process id.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("a started server").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` from the bin folder, run in the cluster's folder without the caller's `PG*`
    /// variables (which would pick another server, user, database or TLS mode).
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                cmd.env_remove(name);
            }
        }
        cmd
    }

    /// The arguments of `psql` and `pg_isready` for the database `name`, as in its URL.
    fn connection(&self, name: &str) -> Vec<String> {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", name];
        args.map(String::from).to_vec()
    }

    /// As [`client`](Self::client), run as the cluster's owner: for initdb, postgres and
    /// pg_ctl, which refuse root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = self.client(program);
        if let Some(o) = self.owner {
            cmd.uid(o.uid).gid(o.gid);
        }
        cmd
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("--pgdata")
            .arg(self.data())
            .args([
                "--username",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                // The cluster never outlives a crash of this machine: no fsync of its files.
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb {} failed ({}){}\n--- output:\n{}{}",
            self.data().display(),
            out.status,
            match self.owner {
                Some(_) => format!(
                    " (as root the cluster belongs to the user postgres, who must be able to \
                     reach {}; for a cluster on disk, point TMPDIR at a folder it can, such as \
                     /tmp)",
                    self.dir.display()
                ),
                None => String::new(),
            },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    /// Starts the server on a free port and waits until it accepts connections. A port taken
    /// in between is retried on another; any other failure panics with the log's tail.
    fn serve(&mut self, settings: &[(&str, &str)]) {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            self.port = free_port();
            let log = File::create(self.log_path()).expect("create postgres.log");
            let mut cmd = self.command("postgres");
            cmd.arg("-D")
                .arg(self.data())
                .args(["-p", &self.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", self.dir.display()));
            for (name, value) in FAST.iter().chain(settings) {
                cmd.arg("-c").arg(format!("{name}={value}"));
            }
            let server = cmd
                .stdout(log.try_clone().expect("postgres.log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bindir.display()));
            writeln!(
                self.watchdog.stdin.as_mut().expect("watchdog's stdin"),
                "{}",
                server.id()
            )
            .expect("tell the watchdog the server's pid");
            self.server = Some(server);
            match self.wait_ready() {
                Ok(()) => return,
                Err(status) => {
                    let log = self.log();
                    if attempt < ATTEMPTS && log.contains("could not bind") {
                        continue;
                    }
                    panic!(
                        "PostgreSQL exited while starting ({status}) on 127.0.0.1:{}\n--- tail of {}:\n{}",
                        self.port,
                        self.log_path().display(),
                        tail(&self.log_path(), 40)
                    );
                }
            }
        }
    }

    /// Polls `pg_isready` until the server accepts connections. Err with the server's exit
    /// status if it ends first; panics with the log's tail after [`START_TIMEOUT`].
    fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let started = Instant::now();
        loop {
            let server = self.server.as_mut().expect("a started server");
            if let Some(status) = server.try_wait().expect("server status") {
                return Err(status);
            }
            let ready = self
                .client("pg_isready")
                .arg("-q")
                .args(self.connection("postgres"))
                .args(["-t", "5"])
                .status()
                .expect("run pg_isready");
            if ready.success() {
                return Ok(());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "PostgreSQL does not accept connections on 127.0.0.1:{} after {START_TIMEOUT:?}\n--- tail of {}:\n{}",
                self.port,
                self.log_path().display(),
                tail(&self.log_path(), 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `CREATE DATABASE name`, through psql.
    fn create_database(&self, name: &str) {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name:?} cannot name a database here: lowercase letters, digits and _, at most 63"
        );
        let out = self
            .client("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(self.connection("postgres"))
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "CREATE DATABASE {name} failed on 127.0.0.1:{}: {}{}",
            self.port,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim(),
        );
    }

    /// Stops the server at once: SIGQUIT (PostgreSQL's immediate shutdown, which ends every
    /// backend before the postmaster exits) through `pg_ctl kill`, SIGKILL if that fails.
    fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        if server.try_wait().ok().flatten().is_some() {
            return;
        }
        let quit = self
            .command("pg_ctl")
            .args(["kill", "QUIT", &server.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !quit {
            let _ = server.kill();
        }
        let _ = server.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The watchdog must not act on a server this stops and reaps (its pid could be reused).
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        self.stop();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "cannot remove the cluster's folder {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}
