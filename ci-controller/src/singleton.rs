//! One controller per database: an OS lock on `<db>.controller.lock`, then the lease row.

use std::fs::{File, TryLockError};

use ci_common::db::{self, lease, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::config::Args;

/// Another controller runs on this database.
#[derive(Debug, thiserror::Error)]
#[error("another controller holds the lock on {db}: {holder}; stop it first (its running jobs continue under the next controller) or start this one with --wait to take over when it exits")]
pub struct AnotherController {
    pub db: String,
    pub holder: String,
}

/// Who this controller is, as stored in the lease row.
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host} pid {}", std::process::id())
}

/// Takes the lock (waiting with `--wait`). `None`: shutdown came while waiting.
pub async fn lock(
    args: &Args,
    pool: &SqlitePool,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<File>> {
    let path = db::sibling(&args.db_path, ".controller.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(Some(file)),
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
        Err(TryLockError::WouldBlock) => {}
    }
    let holder = match lease::current(pool).await {
        Ok(Some(l)) => format!(
            "{} (epoch {}, since {})",
            l.holder,
            l.epoch,
            l.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        _ => "an unknown process".to_owned(),
    };
    if !args.wait {
        return Err(AnotherController {
            db: args.db_path.display().to_string(),
            holder,
        }
        .into());
    }
    eprintln!("waiting for the controller {holder} to release the lock (--wait)");
    let waiting = tokio::task::spawn_blocking(move || file.lock().map(|()| file));
    tokio::select! {
        locked = waiting => Ok(Some(locked??)),
        _ = shutdown.cancelled() => Ok(None),
    }
}
