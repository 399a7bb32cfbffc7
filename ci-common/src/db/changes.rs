//! Change notification: how a replica's log tails and the controller's claim loop learn that
//! another process committed something, on either backend.
//!
//! - **SQLite**: `PRAGMA data_version` on a connection of the watcher's own changes whenever
//!   another connection commits; the watcher reads it every poll interval (cheap: no table is
//!   read).
//! - **PostgreSQL**: writers call [`notify`] inside the transaction that commits the change (once
//!   per committed batch, never per line: `NOTIFY` under heavy write load serialises commits), and
//!   PostgreSQL delivers it when, and only if, the transaction commits; the watcher `LISTEN`s on
//!   [`CHANNEL`]. Where `LISTEN` is not available (behind a transaction-mode pooler such as
//!   PgBouncer's) or its connection is lost, the watcher falls back to waking every poll
//!   interval, and the callers read what changed as they would after a notification.

use std::time::Duration;

use sqlx::Connection as _;

use super::{DbError, Exec};

/// The PostgreSQL channel every change is announced on.
pub const CHANNEL: &str = "ci_changes";

/// Announces a change to the watchers of every process, when the transaction it runs in
/// commits (PostgreSQL; on SQLite, [`Watcher`] sees every commit without it, and this does
/// nothing). Call it once per transaction.
pub async fn notify(ex: impl Into<Exec<'_>>) -> Result<(), DbError> {
    match ex.into() {
        Exec::SqlitePool(_) | Exec::Sqlite(_) => {}
        Exec::PgPool(e) => {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(e)
                .await?;
        }
        Exec::Postgres(e) => {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(e)
                .await?;
        }
    }
    Ok(())
}

/// Waits for changes that other connections commit (see the module's documentation).
pub struct Watcher {
    how: How,
    poll: Duration,
    /// No call to [`Watcher::changed`] yet: the first returns at once.
    first: bool,
}

enum How {
    /// The watcher's own SQLite connection and the `data_version` it last saw.
    Sqlite {
        conn: sqlx::SqliteConnection,
        seen: Option<i64>,
    },
    /// `LISTEN`ing; `None` after the listener failed: waking every poll interval.
    Postgres {
        listener: Option<sqlx::postgres::PgListener>,
    },
}

impl Watcher {
    /// A watcher of the SQLite database `pool` opens, on a connection of its own, reading
    /// `data_version` every `poll`.
    pub async fn sqlite(pool: &sqlx::SqlitePool, poll: Duration) -> Result<Self, DbError> {
        let conn = sqlx::SqliteConnection::connect_with(&pool.connect_options()).await?;
        Ok(Self {
            how: How::Sqlite { conn, seen: None },
            poll,
            first: true,
        })
    }

    /// A watcher of the PostgreSQL database of `pool`, `LISTEN`ing on [`CHANNEL`]; when it
    /// cannot listen, it wakes every `poll` instead (and says so in the log once).
    pub async fn postgres(pool: &sqlx::PgPool, poll: Duration) -> Self {
        let listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => Some(listener),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN for changes; polling instead");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN for changes; polling instead");
                None
            }
        };
        Self {
            how: How::Postgres { listener },
            poll,
            first: true,
        }
    }

    /// The watcher for `db`: [`Watcher::sqlite`] or [`Watcher::postgres`].
    pub async fn open(db: &super::Db, poll: Duration) -> Result<Self, DbError> {
        match db {
            super::Db::Sqlite(pool) => Self::sqlite(pool, poll).await,
            super::Db::Postgres(pool) => Ok(Self::postgres(pool, poll).await),
        }
    }

    /// A PostgreSQL watcher that does not listen: it wakes every `poll` (what [`Self::postgres`]
    /// falls back to).
    pub fn polling(poll: Duration) -> Self {
        Self {
            how: How::Postgres { listener: None },
            poll,
            first: true,
        }
    }

    /// Whether notifications arrive as they happen (`false`: waking every poll interval).
    pub fn listens(&self) -> bool {
        match &self.how {
            How::Sqlite { .. } => true,
            How::Postgres { listener } => listener.is_some(),
        }
    }

    /// Returns once another connection committed since the last call (the first call returns
    /// at once) — or, when notifications cannot be had, after one poll interval. A caller reads
    /// what it is interested in after each return; a spurious wake costs one such read.
    pub async fn changed(&mut self) -> Result<(), DbError> {
        let first = std::mem::take(&mut self.first);
        match &mut self.how {
            How::Sqlite { conn, seen } => loop {
                let version: i64 = sqlx::query_scalar("PRAGMA data_version")
                    .fetch_one(&mut *conn)
                    .await?;
                if *seen != Some(version) || first {
                    *seen = Some(version);
                    return Ok(());
                }
                tokio::time::sleep(self.poll).await;
            },
            How::Postgres { listener } => {
                if first {
                    return Ok(());
                }
                let Some(l) = listener else {
                    tokio::time::sleep(self.poll).await;
                    return Ok(());
                };
                // `try_recv` reconnects a lost connection and says so with `None` (notifications
                // may have been missed meanwhile: that is a change as far as callers know).
                match l.try_recv().await {
                    Ok(_) => {
                        // Several notifications arriving together are one wake.
                        while let Ok(Ok(Some(_))) =
                            tokio::time::timeout(Duration::ZERO, l.try_recv()).await
                        {
                        }
                        Ok(())
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "lost the LISTEN connection; polling instead");
                        *listener = None;
                        Ok(())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{on_exec, users};
    use crate::testing::{backends, Backend};

    /// Waits for the watcher's next wake, at most `within`.
    async fn wakes(watcher: &mut Watcher, within: Duration) -> bool {
        tokio::time::timeout(within, watcher.changed())
            .await
            .is_ok()
    }

    async fn watcher_of(db: &Backend, poll: Duration) -> Watcher {
        match db {
            Backend::Sqlite(t) => Watcher::sqlite(&t.pool, poll).await.unwrap(),
            Backend::Postgres(pool) => Watcher::postgres(pool, poll).await,
        }
    }

    #[tokio::test]
    async fn without_listen_the_watcher_wakes_every_poll_interval() {
        let mut watcher = Watcher::polling(Duration::from_millis(50));
        assert!(!watcher.listens());
        let started = std::time::Instant::now();
        for _ in 0..4 {
            assert!(wakes(&mut watcher, Duration::from_secs(5)).await);
        }
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_commit_elsewhere_wakes_the_watcher_and_nothing_else_does() {
        for db in backends().await {
            a_commit_elsewhere_wakes_the_watcher_and_nothing_else_does_on(&db).await;
        }
    }

    async fn a_commit_elsewhere_wakes_the_watcher_and_nothing_else_does_on(db: &Backend) {
        let mut watcher = watcher_of(db, Duration::from_millis(20)).await;
        assert!(watcher.listens());
        assert!(
            wakes(&mut watcher, Duration::from_secs(5)).await,
            "first call"
        );
        assert!(
            !wakes(&mut watcher, Duration::from_millis(300)).await,
            "no change, no wake"
        );
        // A committed change (with its notification) wakes it; a rolled-back one does not.
        on_exec!(db.exec(), |e| {
            let mut tx = sqlx::Acquire::begin(e).await.unwrap();
            users::create(&mut *tx, "Ada", "ada@example.com")
                .await
                .unwrap();
            notify(&mut *tx).await.unwrap();
            tx.rollback().await.unwrap();
        });
        assert!(
            !wakes(&mut watcher, Duration::from_millis(300)).await,
            "a rollback is no change"
        );
        on_exec!(db.exec(), |e| {
            let mut tx = sqlx::Acquire::begin(e).await.unwrap();
            users::create(&mut *tx, "Ada", "ada@example.com")
                .await
                .unwrap();
            notify(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        });
        assert!(
            wakes(&mut watcher, Duration::from_secs(5)).await,
            "a commit"
        );
        assert!(
            !wakes(&mut watcher, Duration::from_millis(300)).await,
            "one commit, one wake"
        );
    }
}
