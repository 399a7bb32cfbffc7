//! One controller per database: a lock (an OS lock on `<db>.controller.lock` for SQLite, a
//! session advisory lock on PostgreSQL), then the lease row.

use std::fs::{File, TryLockError};

use ci_common::db::lease::ControllerLock;
use ci_common::db::{self, lease, Db};
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

/// The controller's singleton lock, held while it runs.
pub enum Lock {
    /// SQLite: an OS lock on `<db>.controller.lock`, released when the process ends.
    File(File),
    /// PostgreSQL: a session advisory lock ([`ControllerLock`]), released when its connection
    /// ends. Should that connection be lost, the lease's epoch still fences this controller off
    /// once another one takes over.
    Postgres(ControllerLock),
}

impl Lock {
    /// Releases the lock (a clean shutdown).
    pub async fn release(self) {
        match self {
            Self::File(file) => drop(file),
            Self::Postgres(lock) => {
                if let Err(e) = lock.release().await {
                    tracing::warn!("cannot release the controller lock: {e}");
                }
            }
        }
    }
}

/// Takes the lock (waiting with `--wait`). `None`: shutdown came while waiting.
pub async fn lock(
    args: &Args,
    db: &Db,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Lock>> {
    let url = args.db.url()?;
    match db {
        Db::Sqlite(_) => {
            let path = url
                .sqlite_path()
                .expect("an SQLite database has a path")
                .to_owned();
            Ok(lock_file(args, db, &path, shutdown).await?.map(Lock::File))
        }
        Db::Postgres(pool) => {
            let options = pool.connect_options();
            let mut told = false;
            loop {
                if let Some(lock) = ControllerLock::try_acquire(&options).await? {
                    return Ok(Some(Lock::Postgres(lock)));
                }
                let holder = holder_of(db).await;
                if !args.wait {
                    return Err(AnotherController {
                        db: url.to_string(),
                        holder,
                    }
                    .into());
                }
                if !std::mem::replace(&mut told, true) {
                    eprintln!("waiting for the controller {holder} to release the lock (--wait)");
                }
                tokio::select! {
                    () = tokio::time::sleep(lease::HEARTBEAT_EVERY / 5) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Who holds the lease, for messages.
async fn holder_of(db: &Db) -> String {
    match lease::current(db).await {
        Ok(Some(l)) => format!(
            "{} (epoch {}, since {})",
            l.holder,
            l.epoch,
            l.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        _ => "an unknown process".to_owned(),
    }
}

/// The OS lock beside the SQLite database at `db_path`.
async fn lock_file(
    args: &Args,
    db: &Db,
    db_path: &std::path::Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<File>> {
    let path = db::sibling(db_path, ".controller.lock");
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
    let holder = holder_of(db).await;
    if !args.wait {
        return Err(AnotherController {
            db: db_path.display().to_string(),
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
