//! The server's configuration: flags with environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use ci_common::db::DatabaseArgs;
use ci_common::policy::Policy;

use crate::upload::Limits;

const MIB: u64 = 1024 * 1024;

/// Database connections of a replica unless `--db-connections` says otherwise.
pub const DB_CONNECTIONS: u32 = 8;

/// Stateless HTTP API of ci: uploads, jobs and SSE log streams. Run as many replicas as you like
/// against one database.
#[derive(Clone, Debug, Parser)]
#[command(name = "ci-server", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CI_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "CI_PORT", default_value_t = 8000)]
    pub port: u16,

    /// The database shared with the controller and the other replicas.
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// The key that seals users' git credentials and secret variables in the database (64 hex
    /// digits, e.g. from `openssl rand -hex 32`); the controller needs the same. Without it,
    /// storing either is refused (403 `disabled`).
    #[arg(long, env = "CI_SECRETS_KEY_FILE", value_name = "PATH")]
    pub secrets_key_file: Option<std::path::PathBuf>,

    /// Largest accepted upload (the zip archive), in bytes.
    #[arg(long, env = "CI_MAX_UPLOAD_BYTES", default_value_t = 100 * MIB)]
    pub max_upload_bytes: u64,

    /// Highest compression ratio (unpacked / packed) of an archive entry over 1 MiB.
    #[arg(long, env = "CI_MAX_RATIO", default_value_t = 1000)]
    pub max_ratio: u64,

    /// Seconds between keep-alive comments on idle SSE streams.
    #[arg(long, env = "CI_KEEPALIVE_SECS", default_value_t = 15)]
    pub keepalive_secs: u64,

    /// Time limit of a request that is not an upload (streams are not limited once started).
    #[arg(long, env = "CI_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Time limit of an upload, from its first byte to its answer.
    #[arg(long, env = "CI_UPLOAD_TIMEOUT_SECS", default_value_t = 600)]
    pub upload_timeout_secs: u64,

    /// Requests one API key (or a browser session made from it) may make a minute on this
    /// replica, in bursts of as many; more are answered 429 `rate_limited` with `Retry-After`.
    /// Counted per replica (behind a balancer over N replicas a key gets up to N times as many).
    /// 0: no limit.
    #[arg(long, env = "CI_KEY_RATE_PER_MINUTE", default_value_t = 0)]
    pub key_rate_per_minute: u32,

    /// Refused browser sign-ins (`POST /api/v1/session` with a key that cannot be used) one
    /// client address may make a minute on this replica, in bursts of as many; each is recorded
    /// in the audit log. More are answered 429 `too_many_sign_ins` with `Retry-After` and not
    /// recorded. Sign-ins that work are never held back. 0: no limit.
    #[arg(long, env = "CI_SIGN_IN_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub sign_in_failures_per_minute: u32,

    /// How often live streams check the database for new events, in milliseconds.
    #[arg(long, env = "CI_POLL_MS", default_value_t = 15)]
    pub poll_ms: u64,

    /// How long a browser sign-in lasts (e.g. 12h, 7d); revoking its key or deactivating its
    /// user ends it sooner.
    #[arg(long, env = "CI_SESSION_TTL", default_value = "7d", value_parser = parse_ttl)]
    pub session_ttl: Duration,

    /// An origin (`https://ci-ui.example.com`) whose pages may call the API with an API key
    /// (CORS); repeat it, or separate origins with commas in the environment variable. Off by
    /// default: only the server's own pages and clients outside a browser.
    #[arg(long = "cors-origin", env = "CI_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Serve /metrics (Prometheus) and /health on this address, e.g. 127.0.0.1:9101, apart from
    /// the API (port 0 picks a free one; the chosen address is logged). Off by default.
    #[arg(long, env = "CI_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = ci_common::config::parse_duration(text)?;
    if ttl.is_zero() {
        return Err("a sign-in must last longer than 0s".into());
    }
    Ok(ttl)
}

/// An origin as browsers send it: `scheme://host[:port]`, without a path.
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(text.to_ascii_lowercase())
        }
        _ => Err(format!(
            "{text:?} is not an origin: give scheme and host, e.g. https://ci-ui.example.com"
        )),
    }
}

impl Config {
    /// The secrets key of `--secrets-key-file`, read (`None` without the flag).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or does not hold a key.
    pub fn secrets_key(
        &self,
    ) -> Result<Option<ci_common::secrets::SecretsKey>, ci_common::secrets::SecretsError> {
        self.secrets_key_file
            .as_deref()
            .map(ci_common::secrets::SecretsKey::from_file)
            .transpose()
    }

    /// The defaults (and `CI_*` environment variables) with another database (for tests).
    pub fn for_db(db_path: impl Into<PathBuf>) -> Self {
        let mut config = Config::parse_from(["ci-server"]);
        config.db = DatabaseArgs::sqlite(db_path);
        config
    }

    /// The archive limits: entries and unpacked size are the controller's (its published
    /// policy), the compression ratio is this server's zip-bomb guard.
    pub fn limits(&self, policy: &Policy) -> Limits {
        Limits {
            max_entries: policy.max_entries,
            max_unpacked_bytes: policy.max_unpacked_bytes,
            max_ratio: self.max_ratio,
        }
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    pub fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_timeout_secs.max(1))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms.clamp(1, 1000))
    }
}
