//! The `controller_lease` row: one controller at a time writes, identified by an epoch that every
//! controller write checks, so a controller that lost the lease cannot write.

use chrono::{DateTime, Utc};

use super::{on_exec, DbError, Exec};

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

/// The key of the PostgreSQL session advisory lock a controller holds for as long as it runs
/// (on SQLite, an OS lock on a file beside the database does that).
pub const CONTROLLER_LOCK_KEY: i64 = 0x6369_636f_6e74; // "cicont"

/// The controller's singleton lock on PostgreSQL: a session advisory lock held by a connection
/// of its own. It is released when [`ControllerLock::release`] is called, when the connection
/// closes, or when the process dies (the server ends the session) — so a killed controller never
/// keeps a successor out. A controller that lost the connection lost the lock: the lease epoch
/// still fences its writes.
pub struct ControllerLock {
    conn: sqlx::PgConnection,
}

impl ControllerLock {
    /// Takes the lock at once, or `None` while another session holds it.
    pub async fn try_acquire(
        options: &sqlx::postgres::PgConnectOptions,
    ) -> Result<Option<Self>, DbError> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect_with(options).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(CONTROLLER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            Ok(Some(Self { conn }))
        } else {
            conn.close().await?;
            Ok(None)
        }
    }

    /// Whether the lock's session is still there (a controller checks it with its heartbeat).
    pub async fn held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }

    /// Releases the lock (a clean shutdown).
    pub async fn release(mut self) -> Result<(), DbError> {
        use sqlx::Connection as _;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(CONTROLLER_LOCK_KEY)
            .execute(&mut self.conn)
            .await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// Takes the lease for `holder` (after the controller's singleton lock is held), fencing off
/// every earlier epoch.
pub async fn acquire(ex: impl Into<Exec<'_>>, holder: &str) -> Result<Lease, DbError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "INSERT INTO controller_lease (id, epoch, holder, acquired_at, heartbeat_at)
         VALUES (1, 1, $1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET epoch = controller_lease.epoch + 1, holder = $1,
             acquired_at = $2, heartbeat_at = $2, released_at = NULL
         RETURNING epoch, holder, acquired_at, heartbeat_at, released_at",
    )
    .bind(holder)
    .bind(now)
    .fetch_one(e)
    .await?))
}

pub async fn current(ex: impl Into<Exec<'_>>) -> Result<Option<Lease>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT epoch, holder, acquired_at, heartbeat_at, released_at FROM controller_lease",
    )
    .fetch_optional(e)
    .await?))
}

/// Fails with [`DbError::LeaseLost`] unless `epoch` is the current one. Called first in every
/// transaction a controller writes in ([`super::BeginWrite`]), it fences that transaction: on
/// SQLite the transaction already holds the write lock, so no takeover can come in between; on
/// PostgreSQL the lease row is read `FOR SHARE`, so a takeover (which updates that row) waits
/// until the transaction ends.
pub async fn check(ex: impl Into<Exec<'_>>, epoch: i64) -> Result<(), DbError> {
    const SQLITE: &str = "SELECT epoch FROM controller_lease WHERE id = 1";
    const POSTGRES: &str = "SELECT epoch FROM controller_lease WHERE id = 1 FOR SHARE";
    let current: Option<i64> = match ex.into() {
        Exec::SqlitePool(e) => sqlx::query_scalar(SQLITE).fetch_optional(e).await?,
        Exec::Sqlite(e) => sqlx::query_scalar(SQLITE).fetch_optional(e).await?,
        Exec::PgPool(e) => sqlx::query_scalar(POSTGRES).fetch_optional(e).await?,
        Exec::Postgres(e) => sqlx::query_scalar(POSTGRES).fetch_optional(e).await?,
    };
    if current == Some(epoch) {
        Ok(())
    } else {
        Err(DbError::LeaseLost(epoch))
    }
}

/// Records that the holder of `epoch` is alive; fails if it no longer holds the lease.
pub async fn heartbeat(ex: impl Into<Exec<'_>>, epoch: i64) -> Result<(), DbError> {
    let updated = on_exec!(ex, |e| sqlx::query(
        "UPDATE controller_lease SET heartbeat_at = $1 WHERE id = 1 AND epoch = $2"
    )
    .bind(super::now())
    .bind(epoch)
    .execute(e)
    .await?
    .rows_affected());
    if updated == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost(epoch))
    }
}

/// Marks the lease released (on a clean shutdown).
pub async fn release(ex: impl Into<Exec<'_>>, epoch: i64) -> Result<(), DbError> {
    on_exec!(ex, |e| sqlx::query(
        "UPDATE controller_lease SET released_at = $1 WHERE id = 1 AND epoch = $2"
    )
    .bind(super::now())
    .bind(epoch)
    .execute(e)
    .await
    .map(drop)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::BeginWrite as _;
    use crate::testing::{backends, Backend};

    #[tokio::test]
    async fn one_controller_lock_per_postgres_database_released_with_its_session() {
        for db in backends().await {
            let Backend::Postgres(pool) = &db else {
                continue;
            };
            let options = pool.connect_options();
            let mut first = ControllerLock::try_acquire(&options)
                .await
                .unwrap()
                .unwrap();
            assert!(first.held().await);
            assert!(ControllerLock::try_acquire(&options)
                .await
                .unwrap()
                .is_none());
            first.release().await.unwrap();
            let second = ControllerLock::try_acquire(&options)
                .await
                .unwrap()
                .unwrap();
            // A session that ends (a killed controller) releases it too.
            drop(second);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Some(third) = ControllerLock::try_acquire(&options).await.unwrap() {
                    third.release().await.unwrap();
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lock outlived its session"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test]
    async fn a_new_holder_fences_off_the_old_epoch() {
        for db in backends().await {
            a_new_holder_fences_off_the_old_epoch_on(&db).await;
        }
    }

    async fn a_new_holder_fences_off_the_old_epoch_on(db: &Backend) {
        assert_eq!(current(db.exec()).await.unwrap(), None);
        let first = acquire(db.exec(), "host:1").await.unwrap();
        assert_eq!(first.epoch, 1);
        heartbeat(db.exec(), 1).await.unwrap();
        check(db.exec(), 1).await.unwrap();
        let second = acquire(db.exec(), "host:2").await.unwrap();
        assert_eq!((second.epoch, second.holder.as_str()), (2, "host:2"));
        assert!(matches!(
            heartbeat(db.exec(), 1).await,
            Err(DbError::LeaseLost(1))
        ));
        assert!(matches!(
            check(db.exec(), 1).await,
            Err(DbError::LeaseLost(1))
        ));
        release(db.exec(), 1).await.unwrap();
        assert_eq!(current(db.exec()).await.unwrap().unwrap().released_at, None);
        release(db.exec(), 2).await.unwrap();
        let released = current(db.exec()).await.unwrap().unwrap();
        assert!(released.released_at.is_some());
        assert!(!released.is_live(Utc::now()));
        // Inside a write transaction too.
        crate::db::on_exec!(db.exec(), |e| {
            let mut tx = e.begin_write().await.unwrap();
            check(&mut *tx, 2).await.unwrap();
            assert!(check(&mut *tx, 1).await.is_err());
            tx.commit().await.unwrap();
        });
    }

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
