//! Command-line flags (each with an environment fallback) and the settings derived from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Runs queued ci jobs in locked-down Docker containers and streams their output into the
/// database. Exactly one controller runs per database.
#[derive(Clone, Debug, Parser)]
#[command(name = "ci-controller", version, about, args_override_self = true)]
pub struct Args {
    /// The database shared with the ci-server replicas.
    #[command(flatten)]
    pub db: ci_common::db::DatabaseArgs,

    /// Seconds between two looks at the queue (pickup latency), e.g. 0.1.
    #[arg(long, env = "CI_RECONCILE_INTERVAL", default_value_t = 0.1, value_parser = parse_interval)]
    pub interval: f64,

    /// Prefix of container and volume names, and value of their `ci.prefix` label.
    #[arg(long, env = "CI_CONTAINER_PREFIX", default_value = "ci", value_parser = parse_prefix)]
    pub container_prefix: String,

    /// The image jobs run in unless they ask for another allowed one (offline:
    /// scripts/build-runner-image.sh, then --image ci-runner:bookworm).
    #[arg(long, env = "CI_IMAGE", default_value = ci_common::policy::DEFAULT_IMAGE)]
    pub image: String,

    /// Other images jobs may ask for (`ci submit --image`, `image` under [tool.ci]), comma-separated;
    /// --image is always allowed.
    #[arg(
        long,
        env = "CI_ALLOWED_IMAGES",
        value_delimiter = ',',
        value_name = "IMAGE[,IMAGE...]"
    )]
    pub allowed_images: Vec<String>,

    /// Most entries (files and folders) in an uploaded project.
    #[arg(long, env = "CI_MAX_ARCHIVE_ENTRIES", default_value_t = ci_common::policy::DEFAULT_MAX_ENTRIES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entries: u64,

    /// Most re-runs of failed tests a job may ask for (`ci submit --retries`, `retries` under
    /// `[tool.ci]`); 0 turns retries off.
    #[arg(long, env = "CI_MAX_RETRIES", default_value_t = ci_common::policy::DEFAULT_MAX_RETRIES, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub max_retries: u32,

    /// Delete jobs that ended longer ago than this (`30d`, `12h`), with their logs, results and
    /// artifacts, in small batches, checking once a minute; 0: keep them (the default).
    #[arg(long, env = "CI_RETAIN", default_value = "0", value_parser = parse_duration)]
    pub retain: Duration,

    /// With --retain: keep each user's N newest jobs however old.
    #[arg(long, env = "CI_RETAIN_KEEP_LAST", default_value_t = 0)]
    pub retain_keep_last: u32,

    /// Most running jobs one user may have at once (on all Docker hosts); the user's other jobs
    /// wait in the queue while other users' run. 0: no limit beyond the fair claim.
    #[arg(long, env = "CI_MAX_RUNNING_PER_USER", default_value_t = 0)]
    pub max_running_per_user: u32,

    /// Most queued jobs one user may have; the server refuses more with 429 `queue_full`
    /// (checked at submission: submissions at the same moment on several replicas may pass it by
    /// a few). 0: no limit.
    #[arg(long, env = "CI_MAX_QUEUED_PER_USER", default_value_t = 0)]
    pub max_queued_per_user: u64,

    /// Where jobs may fetch their project from with git (`ci submit --git URL`), one allow
    /// rule per value or comma-separated: SCHEME://HOST, HOST a name (github.com), a wildcard
    /// (*.example.com, or * for any public host), an address or a CIDR block. Loopback, private
    /// and link-local addresses are refused unless a rule names them (their block, address or
    /// the host's exact name).
    #[arg(
        long,
        env = "CI_GIT_ALLOW",
        value_delimiter = ',',
        value_name = "RULE[,RULE...]",
        default_value = "https://*",
        value_parser = allow_rule
    )]
    pub git_allow: Vec<String>,

    /// The Docker network of the step that fetches a job's project with git (it needs one
    /// that reaches the git host; the other steps keep theirs).
    #[arg(long, env = "CI_GIT_NETWORK", default_value = "bridge")]
    pub git_network: String,

    /// The key that seals users' git credentials and secret variables in the database, the same
    /// file as the server's (64 hex digits, e.g. from `openssl rand -hex 32`): the fetch step of
    /// a job from git gets its owner's credential for the remote's host, and the steps of tasks
    /// that list `secrets` get them. Without it, no credential is used and such jobs end
    /// `error`.
    #[arg(long, env = "CI_SECRETS_KEY_FILE", value_name = "PATH")]
    pub secrets_key_file: Option<PathBuf>,

    /// Time limit of that fetch step: `90s`, `5m` or plain seconds.
    #[arg(long, env = "CI_GIT_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub git_timeout: Duration,

    /// Where outgoing webhooks may be sent (`ci webhooks add URL`): allow rules as for
    /// --git-allow.
    #[arg(
        long,
        env = "CI_WEBHOOK_ALLOW",
        value_delimiter = ',',
        value_name = "RULE[,RULE...]",
        default_value = "https://*",
        value_parser = allow_rule
    )]
    pub webhook_allow: Vec<String>,

    /// Time limit of one webhook delivery attempt, connecting included: `10s`, `500ms`. A
    /// receiver that does not answer in time gets the delivery again later.
    #[arg(long, env = "CI_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub webhook_timeout: Duration,

    /// The delay before a failed webhook delivery is tried again, doubled after each failure
    /// (30s, 1m, 2m, ...): `30s`, `50ms`.
    #[arg(long, env = "CI_WEBHOOK_RETRY_BASE", default_value = "30s", value_parser = parse_positive_duration)]
    pub webhook_retry_base: Duration,

    /// How long after its first attempt a failing webhook delivery is last tried; then it is
    /// `failed`.
    #[arg(long, env = "CI_WEBHOOK_GIVE_UP_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub webhook_give_up_after: Duration,

    /// Folder for the controller's own files (the passwd and group files mounted into jobs);
    /// default: `controller/` beside an SQLite database, else in the default data folder
    /// ($XDG_DATA_HOME/ci, else ~/.local/share/ci).
    #[arg(long, env = "CI_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// How many jobs run at once (default: the number of CPUs).
    #[arg(long, env = "CI_MAX_CONCURRENT_JOBS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_jobs: Option<u32>,

    /// Wall-clock limit of a job, counted from its start: `90s`, `30m`, `1h` or plain seconds.
    #[arg(long, env = "CI_JOB_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub job_timeout: Duration,

    /// Memory limit of a job's container (memory + swap is the same): `512m`, `1g`, bytes.
    #[arg(long, env = "CI_MEMORY", default_value = "1g", value_parser = parse_size)]
    pub memory: u64,

    /// CPUs a job's container may use, e.g. 0.5 or 2.
    #[arg(long, env = "CI_CPUS", default_value_t = 1.0, value_parser = parse_cpus)]
    pub cpus: f64,

    /// Maximum number of processes in a job's container.
    #[arg(long, env = "CI_PIDS_LIMIT", default_value_t = 256, value_parser = clap::value_parser!(i64).range(1..))]
    pub pids_limit: i64,

    /// Size of the tmpfs mounted at /tmp in a job's container.
    #[arg(long, env = "CI_TMP_SIZE", default_value = "256m", value_parser = parse_size)]
    pub tmp_size: u64,

    /// Largest unpacked project accepted into the /workspace volume (uploads are checked
    /// against it before a job exists).
    #[arg(long, env = "CI_WORKSPACE_SIZE", default_value_t = ci_common::policy::DEFAULT_MAX_UNPACKED_BYTES, value_parser = parse_size)]
    pub workspace_size: u64,

    /// Largest test report read from a test step (`ci`'s pytest plugin writes one line per
    /// test); a larger one is skipped with a notice.
    #[arg(long, env = "CI_REPORT_MAX_BYTES", default_value = "64m", value_parser = parse_size)]
    pub report_max_bytes: u64,

    /// A job's stored log keeps at most this many bytes (head and tail; 0 = unlimited).
    #[arg(long, env = "CI_LOG_CAP_BYTES", default_value = "32m", value_parser = parse_size)]
    pub log_cap_bytes: u64,

    /// A job's stored log keeps at most this many lines (head and tail; 0 = unlimited).
    #[arg(long, env = "CI_LOG_CAP_LINES", default_value_t = 1_000_000)]
    pub log_cap_lines: u64,

    /// Longer output lines are split into several log lines of at most this many bytes.
    #[arg(long, env = "CI_MAX_LINE_BYTES", default_value = "16k", value_parser = parse_line_bytes)]
    pub max_line_bytes: u64,

    /// OCI runtime of job containers, as registered with Docker (`runsc` for gVisor: see
    /// scripts/ensure-gvisor.sh); default: Docker's default runtime.
    #[arg(long, env = "CI_RUNTIME", value_parser = parse_runtime)]
    pub runtime: Option<String>,

    /// OCI runtime of steps with network (the install step; gVisor: `runsc-net`); default: the
    /// same as --runtime.
    #[arg(long, env = "CI_RUNTIME_WITH_NETWORK", value_parser = parse_runtime)]
    pub runtime_with_network: Option<String>,

    /// Docker network of the dependency installation phase.
    #[arg(long, env = "CI_INSTALL_NETWORK", default_value = "bridge")]
    pub install_network: String,

    /// Docker network of the test phase (`none`: no network).
    #[arg(long, env = "CI_TEST_NETWORK", default_value = "none")]
    pub test_network: String,

    /// What installs jobs' requirements: `auto` (the project's `installer` under [tool.ci], else
    /// uv when the image has it, else pip), or `pip` / `uv` for every job.
    #[arg(long, env = "CI_INSTALLER", default_value = "auto")]
    pub installer: ci_common::project::Installer,

    /// Most bytes the dependency cache keeps in all (0 = no limit); least recently used entries
    /// go first.
    #[arg(long, env = "CI_CACHE_MAX_BYTES", default_value = "10g", value_parser = parse_size)]
    pub cache_max_bytes: u64,

    /// Most bytes the dependency cache keeps for one user (0 = no limit).
    #[arg(long, env = "CI_CACHE_MAX_BYTES_PER_USER", default_value = "2g", value_parser = parse_size)]
    pub cache_max_bytes_per_user: u64,

    /// Dependency cache entries unused this long are removed (0 = kept however old).
    #[arg(long, env = "CI_CACHE_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub cache_max_age: Duration,

    /// How long an uploaded source is kept after the last job that used it, so that `ci retry`
    /// can run a job again (each content stored once).
    #[arg(long, env = "CI_SOURCE_RETAIN", default_value = "7d", value_parser = parse_duration)]
    pub source_retain: Duration,

    /// How long a job's artifacts are kept (0 = as long as the job's record).
    #[arg(long, env = "CI_ARTIFACT_RETAIN", default_value = "30d", value_parser = parse_duration)]
    pub artifact_retain: Duration,

    /// How long a stopped job gets between SIGTERM and SIGKILL.
    #[arg(long, env = "CI_STOP_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,

    /// A Docker engine to run jobs on (unix:///path, tcp://host:port or http://host:port);
    /// repeat it for several (each is named by its URL, without a capacity of its own). Default:
    /// DOCKER_HOST, then the local socket.
    #[arg(long, env = "CI_DOCKER_HOST")]
    pub docker_host: Vec<String>,

    /// A TOML file listing the Docker engines, with names, capacities and TLS client
    /// certificates (see the README); instead of --docker-host.
    #[arg(long, env = "CI_DOCKER_HOSTS_FILE")]
    pub docker_hosts_file: Option<PathBuf>,

    /// How often each Docker host is pinged (and its CPU and memory read).
    #[arg(long, env = "CI_HOST_CHECK_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub host_check_interval: Duration,

    /// How long the running jobs of a host that stopped answering wait for it: if it answers
    /// again in time they are reattached; past it they end `lost`.
    #[arg(long, env = "CI_HOST_LOST_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub host_lost_after: Duration,

    /// Serve /metrics (Prometheus) and /health on this address, e.g. 127.0.0.1:9100.
    #[arg(long, env = "CI_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Wait for the running controller to exit instead of exiting at once.
    #[arg(long, env = "CI_CONTROLLER_WAIT")]
    pub wait: bool,

    /// The uid:gid jobs run as inside their containers.
    #[arg(long, env = "CI_USER", default_value = "1000:1000", value_parser = parse_user)]
    pub user: String,
}

impl Args {
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent_jobs
            .map(|n| n as usize)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
    }

    /// The bounds of the dependency cache (0 is no bound).
    pub fn cache_bounds(&self) -> ci_common::db::cache::CacheBounds {
        ci_common::db::cache::CacheBounds {
            max_bytes: (self.cache_max_bytes > 0).then_some(self.cache_max_bytes),
            max_bytes_per_user: (self.cache_max_bytes_per_user > 0)
                .then_some(self.cache_max_bytes_per_user),
            max_age: (!self.cache_max_age.is_zero()).then_some(self.cache_max_age),
        }
    }

    /// The Docker hosts to run jobs on (see [`crate::hosts`]).
    pub fn hosts(&self) -> Result<Vec<crate::hosts::HostSpec>, crate::hosts::HostsError> {
        crate::hosts::specs(&self.docker_host, self.docker_hosts_file.as_deref())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }

    /// What the operator allows, as published for the server (see [`ci_common::policy`]).
    pub fn policy(&self) -> ci_common::policy::Policy {
        ci_common::policy::Policy::new(
            &self.image,
            &self.allowed_images,
            self.workspace_size,
            self.max_entries,
        )
        .with_max_retries(self.max_retries)
        .with_outbound(self.git_allow.clone(), self.webhook_allow.clone())
        .with_max_queued_per_user(self.max_queued_per_user)
    }

    /// How the webhook sender sends (see [`crate::webhooks`]).
    pub fn webhook_settings(&self) -> crate::webhooks::SenderSettings {
        crate::webhooks::SenderSettings {
            timeout: self.webhook_timeout,
            schedule: ci_common::webhooks::RetrySchedule {
                base: self.webhook_retry_base,
                give_up_after: self.webhook_give_up_after,
            },
            concurrency: WEBHOOK_CONCURRENCY,
        }
    }

    /// Where ci's pytest plugin lives (mounted into job containers).
    pub fn plugins_dir(&self) -> PathBuf {
        self.identity_dir().with_file_name("plugins")
    }

    /// Where the generated passwd and group files of job containers live.
    pub fn identity_dir(&self) -> PathBuf {
        let state = self.state_dir.clone().unwrap_or_else(|| {
            let sqlite = self
                .db
                .url()
                .ok()
                .and_then(|url| url.sqlite_path().map(Into::into));
            let db_path = sqlite.unwrap_or_else(ci_common::config::default_db_path);
            let parent = db_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| std::path::Path::new("."));
            parent.join("controller")
        });
        let state = std::path::absolute(&state).unwrap_or(state);
        state.join("identity")
    }

    /// The uid and gid of `--user`.
    pub fn uid_gid(&self) -> (u64, u64) {
        split_user(&self.user).unwrap_or((1000, 1000))
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 0.1)"))?;
    if value.is_finite() && value > 0.0 && value <= 60.0 {
        Ok(value)
    } else {
        Err("the interval must be between 0 and 60 seconds".into())
    }
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of CPUs (e.g. 1.5)"))?;
    if value.is_finite() && value >= 0.01 {
        Ok(value)
    } else {
        Err("--cpus must be at least 0.01".into())
    }
}

fn allow_rule(s: &str) -> Result<String, String> {
    s.parse::<ci_common::outbound::AllowRule>()
        .map(|rule| rule.to_string())
        .map_err(|e| e.to_string())
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("the prefix must be 1-40 letters, digits, '-', '_' or '.', starting with a letter or digit".into())
    }
}

fn split_user(s: &str) -> Option<(u64, u64)> {
    let (uid, gid) = s.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

fn parse_user(s: &str) -> Result<String, String> {
    match split_user(s) {
        Some((0, _)) => Err("jobs must not run as root (uid 0)".into()),
        Some(_) => Ok(s.to_owned()),
        None => Err(format!("{s:?} is not uid:gid (e.g. 1000:1000)")),
    }
}

fn parse_runtime(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a runtime name (letters, digits, '-', '_', '.'; e.g. runsc)"
        ))
    }
}

fn parse_line_bytes(s: &str) -> Result<u64, String> {
    let value = parse_size(s)?;
    if value >= 16 {
        Ok(value)
    } else {
        Err("--max-line-bytes must be at least 16".into())
    }
}

pub use ci_common::config::parse_duration;

/// Webhook deliveries sent at once (each waits for its receiver at most `--webhook-timeout`).
pub const WEBHOOK_CONCURRENCY: usize = 8;

/// A duration longer than zero.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: give a duration longer than zero, e.g. 10s")),
        d => Ok(d),
    }
}

/// `256m`, `1g`, `512k`, `1GiB` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let factor: u64 = match unit.to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use k, m or g, e.g. 256m)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 256m, 1g)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{s:?} is not a size (e.g. 256m, 1g)"));
    }
    Ok((value * factor as f64) as u64)
}

/// A size as Docker and people write it (`256m`).
pub fn human_size(bytes: u64) -> String {
    for (unit, factor) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_docker_units() {
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("256m").unwrap(), 256 << 20);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("16k").unwrap(), 16 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert_eq!(human_size(256 << 20), "256m");
        assert_eq!(human_size(1 << 30), "1g");
        assert_eq!(human_size(1000), "1000");
    }

    #[test]
    fn defaults_match_the_documentation() {
        let args = Args::try_parse_from(["ci-controller"]).unwrap();
        assert_eq!(args.interval, 0.1);
        assert_eq!(args.container_prefix, "ci");
        assert_eq!(args.image, "python:3.12-slim");
        assert_eq!(args.job_timeout, Duration::from_secs(1800));
        assert_eq!(args.memory, 1 << 30);
        assert_eq!(args.cpus, 1.0);
        assert_eq!(args.pids_limit, 256);
        assert_eq!(args.tmp_size, 256 << 20);
        assert_eq!(args.log_cap_bytes, 32 << 20);
        assert_eq!(args.log_cap_lines, 1_000_000);
        assert_eq!(args.max_line_bytes, 16 << 10);
        assert_eq!(args.install_network, "bridge");
        assert_eq!(args.test_network, "none");
        assert_eq!(args.runtime, None);
        assert_eq!(args.runtime_with_network, None);
        assert_eq!(args.stop_grace, Duration::from_secs(10));
        assert_eq!(args.user, "1000:1000");
        let webhooks = args.webhook_settings();
        assert_eq!(webhooks.timeout, Duration::from_secs(10));
        assert_eq!(
            webhooks.schedule,
            ci_common::webhooks::RetrySchedule::default()
        );
        let quick =
            Args::try_parse_from(["ci-controller", "--webhook-retry-base", "50ms"]).unwrap();
        assert_eq!(quick.webhook_retry_base, Duration::from_millis(50));
        assert!(Args::try_parse_from(["ci-controller", "--webhook-timeout", "0"]).is_err());
        assert_eq!(args.uid_gid(), (1000, 1000));
        assert!(args.max_concurrent() >= 1);
    }

    #[test]
    fn the_last_occurrence_of_a_flag_wins() {
        let args = Args::try_parse_from(["ci-controller", "--image", "a", "--image", "b"]).unwrap();
        assert_eq!(args.image, "b");
    }

    #[test]
    fn root_and_odd_prefixes_are_refused() {
        assert!(Args::try_parse_from(["ci-controller", "--user", "0:0"]).is_err());
        assert!(Args::try_parse_from(["ci-controller", "--container-prefix", "a/b"]).is_err());
        assert!(Args::try_parse_from(["ci-controller", "--max-concurrent-jobs", "0"]).is_err());
    }
}
