//! The `controller_lease` row: one controller at a time writes, identified by an epoch that every
//! controller write checks, so a controller that lost the lease cannot write.

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::DbError;

/// How often the controller holding the lease writes its heartbeat.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A controller whose heartbeat is older than this many heartbeats is taken for gone.
const MISSED_HEARTBEATS: i32 = 3;

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Lease {
    pub epoch: i64,
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

impl Lease {
    /// Whether a controller holds the lease at `now`: not released on shutdown, and its
    /// heartbeat is recent (a killed controller stops beating).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        let beat = chrono::Duration::from_std(HEARTBEAT_EVERY).expect("a few seconds");
        self.released_at.is_none() && now - self.heartbeat_at <= beat * MISSED_HEARTBEATS
    }
}

/// Takes the lease for `holder` (after the OS lock is held), fencing off every earlier epoch.
pub async fn acquire(pool: &SqlitePool, holder: &str) -> Result<Lease, DbError> {
    let now = Utc::now();
    Ok(sqlx::query_as(
        "INSERT INTO controller_lease (id, epoch, holder, acquired_at, heartbeat_at)
         VALUES (1, 1, ?1, ?2, ?2)
         ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1, holder = ?1, acquired_at = ?2,
             heartbeat_at = ?2, released_at = NULL
         RETURNING epoch, holder, acquired_at, heartbeat_at, released_at",
    )
    .bind(holder)
    .bind(now)
    .fetch_one(pool)
    .await?)
}

pub async fn current(ex: impl SqliteExecutor<'_>) -> Result<Option<Lease>, DbError> {
    Ok(sqlx::query_as(
        "SELECT epoch, holder, acquired_at, heartbeat_at, released_at FROM controller_lease",
    )
    .fetch_optional(ex)
    .await?)
}

/// Fails with [`DbError::LeaseLost`] unless `epoch` is the current one.
pub async fn check(conn: &mut SqliteConnection, epoch: i64) -> Result<(), DbError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM controller_lease WHERE id = 1")
            .fetch_optional(conn)
            .await?;
    if current == Some(epoch) {
        Ok(())
    } else {
        Err(DbError::LeaseLost(epoch))
    }
}

/// Records that the holder of `epoch` is alive; fails if it no longer holds the lease.
pub async fn heartbeat(ex: impl SqliteExecutor<'_>, epoch: i64) -> Result<(), DbError> {
    let done =
        sqlx::query("UPDATE controller_lease SET heartbeat_at = ? WHERE id = 1 AND epoch = ?")
            .bind(Utc::now())
            .bind(epoch)
            .execute(ex)
            .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost(epoch))
    }
}

/// Marks the lease released (on a clean shutdown).
pub async fn release(ex: impl SqliteExecutor<'_>, epoch: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE controller_lease SET released_at = ? WHERE id = 1 AND epoch = ?")
        .bind(Utc::now())
        .bind(epoch)
        .execute(ex)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_while_its_heartbeat_is_recent_and_it_is_not_released() {
        let now = Utc::now();
        let lease = Lease {
            epoch: 1,
            holder: "host:1".into(),
            acquired_at: now,
            heartbeat_at: now - chrono::Duration::seconds(4),
            released_at: None,
        };
        assert!(lease.is_live(now));
        assert!(!lease.is_live(now + chrono::Duration::seconds(20)));
        let released = Lease {
            released_at: Some(now),
            ..lease
        };
        assert!(!released.is_live(now));
    }
}
