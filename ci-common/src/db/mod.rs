//! The SQLite database layer. [`connect`] is the one place a database is opened and migrated;
//! each table has a module of free functions named for what they do.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection as _;
pub use sqlx::SqlitePool;

pub mod api_keys;
pub mod args;
pub mod audit;
pub mod blobs;
pub mod cache;
pub mod changes;
pub mod copy;
pub mod docker_hosts;
pub mod events;
pub mod git_credentials;
pub mod jobs;
pub mod lease;
pub mod legacy;
pub mod policy;
pub mod retention;
pub mod secret_variables;
pub mod sessions;
pub mod steps;
pub mod teams;
pub mod test_results;
pub mod triggers;
pub mod uploads;
pub mod url;
pub mod users;
pub mod webhooks;

pub use args::DatabaseArgs;
pub use url::{DatabaseUrl, DatabaseUrlError};

/// Every SQLite migration in `migrations/sqlite/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The same schema for PostgreSQL, from `migrations/postgres/`.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// Where a query of this layer runs: a pool or a connection (a transaction's: `&mut *tx`), on
/// SQLite or PostgreSQL. Functions of the layer that work on both backends take
/// `impl Into<Exec<'_>>`, so that callers pass what they hold, and run one body for every
/// backend with [`on_exec!`]; their SQL is written once, with `$1, $2, ...` placeholders, which
/// both backends read, and differs only where the backends do (say so beside it).
pub enum Exec<'c> {
    SqlitePool(&'c SqlitePool),
    Sqlite(&'c mut sqlx::SqliteConnection),
    PgPool(&'c sqlx::PgPool),
    Postgres(&'c mut sqlx::PgConnection),
}

impl<'c> From<&'c SqlitePool> for Exec<'c> {
    fn from(pool: &'c SqlitePool) -> Self {
        Self::SqlitePool(pool)
    }
}

impl<'c> From<&'c mut sqlx::SqliteConnection> for Exec<'c> {
    fn from(conn: &'c mut sqlx::SqliteConnection) -> Self {
        Self::Sqlite(conn)
    }
}

impl<'c> From<&'c mut sqlx::Transaction<'_, sqlx::Sqlite>> for Exec<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Self {
        Self::Sqlite(tx)
    }
}

impl<'c> From<&'c mut sqlx::Transaction<'_, sqlx::Postgres>> for Exec<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'_, sqlx::Postgres>) -> Self {
        Self::Postgres(tx)
    }
}

impl<'c> From<&'c sqlx::PgPool> for Exec<'c> {
    fn from(pool: &'c sqlx::PgPool) -> Self {
        Self::PgPool(pool)
    }
}

impl<'c> From<&'c mut sqlx::PgConnection> for Exec<'c> {
    fn from(conn: &'c mut sqlx::PgConnection) -> Self {
        Self::Postgres(conn)
    }
}

impl Exec<'_> {
    /// Whether this runs on PostgreSQL: for the few statements whose SQL differs by backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::PgPool(_) | Self::Postgres(_))
    }

    /// The same executor for a shorter while, so that a function can run more than one query on
    /// what it was given (a pool is shared; a connection is lent again).
    pub fn reborrow(&mut self) -> Exec<'_> {
        match self {
            Self::SqlitePool(pool) => Exec::SqlitePool(pool),
            Self::Sqlite(conn) => Exec::Sqlite(conn),
            Self::PgPool(pool) => Exec::PgPool(pool),
            Self::Postgres(conn) => Exec::Postgres(conn),
        }
    }
}

/// A write transaction on either backend, begun by [`Db::begin_write`]: what a caller outside
/// this layer holds to run several of its functions as one change (an action and its
/// [`audit`] row). `&mut Tx` is an executor of the layer's functions; a function that begins a
/// transaction of its own runs in a savepoint of this one. Dropped without [`Tx::commit`], it
/// is rolled back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// Where the layer's functions run: this transaction.
    pub fn exec(&mut self) -> Exec<'_> {
        self.into()
    }

    /// Commits everything done in the transaction.
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl<'c> From<&'c mut Tx> for Exec<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        match tx {
            Tx::Sqlite(tx) => Self::Sqlite(tx),
            Tx::Postgres(tx) => Self::Postgres(tx),
        }
    }
}

/// Runs `$body` with `$e` bound to the executor `$ex` (an `impl Into<Exec>`) holds: the same
/// code, compiled once per backend and kind of executor. A body that needs SQL of its own per
/// backend matches on [`Exec`] itself.
macro_rules! on_exec {
    ($ex:expr, |$e:ident| $body:expr) => {
        match Into::<$crate::db::Exec<'_>>::into($ex) {
            $crate::db::Exec::SqlitePool($e) => $body,
            $crate::db::Exec::Sqlite($e) => $body,
            $crate::db::Exec::PgPool($e) => $body,
            $crate::db::Exec::Postgres($e) => $body,
        }
    };
}
pub(crate) use on_exec;

/// Beginning a transaction that will write, on either backend: on SQLite `BEGIN IMMEDIATE`,
/// which takes the database's write lock at once (a deferred transaction that reads first and
/// writes later can fail with "database is locked" when another writer went in between); on
/// PostgreSQL a plain transaction (its row locks order writers). On a connection already in a
/// transaction it is a savepoint, under the outer transaction's locks.
pub(crate) trait BeginWrite<'c> {
    type Database: sqlx::Database;
    fn begin_write(
        self,
    ) -> futures_util::future::BoxFuture<
        'c,
        Result<sqlx::Transaction<'c, Self::Database>, sqlx::Error>,
    >;
}

impl<'c> BeginWrite<'c> for &'c SqlitePool {
    type Database = sqlx::Sqlite;
    fn begin_write(
        self,
    ) -> futures_util::future::BoxFuture<'c, Result<sqlx::Transaction<'c, sqlx::Sqlite>, sqlx::Error>>
    {
        let pool = self.clone();
        Box::pin(async move {
            let tx: Result<sqlx::Transaction<'c, sqlx::Sqlite>, _> =
                pool.begin_with("BEGIN IMMEDIATE").await;
            tx
        })
    }
}

impl<'c> BeginWrite<'c> for &'c mut sqlx::SqliteConnection {
    type Database = sqlx::Sqlite;
    fn begin_write(
        self,
    ) -> futures_util::future::BoxFuture<'c, Result<sqlx::Transaction<'c, sqlx::Sqlite>, sqlx::Error>>
    {
        if sqlx::Connection::is_in_transaction(self) {
            sqlx::Connection::begin(self)
        } else {
            sqlx::Connection::begin_with(self, "BEGIN IMMEDIATE")
        }
    }
}

impl<'c> BeginWrite<'c> for &'c sqlx::PgPool {
    type Database = sqlx::Postgres;
    fn begin_write(
        self,
    ) -> futures_util::future::BoxFuture<
        'c,
        Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error>,
    > {
        let pool = self.clone();
        Box::pin(async move {
            let tx: Result<sqlx::Transaction<'c, sqlx::Postgres>, _> = pool.begin().await;
            tx
        })
    }
}

impl<'c> BeginWrite<'c> for &'c mut sqlx::PgConnection {
    type Database = sqlx::Postgres;
    fn begin_write(
        self,
    ) -> futures_util::future::BoxFuture<
        'c,
        Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error>,
    > {
        sqlx::Connection::begin(self)
    }
}

/// `text` as the backend stores it (`postgres`: PostgreSQL, else SQLite): unchanged on SQLite;
/// on PostgreSQL, whose text cannot hold a NUL character, each NUL replaced by U+FFFD, the
/// character that stands for one that could not be kept. Borrowed unless something changed, so
/// that the log's hot path copies nothing on SQLite. The one rule for every text written
/// ([`events::append`], [`test_results::store`], the reasons of jobs and steps,
/// [`copy::postgres_text`]).
pub fn stored_text(postgres: bool, text: &str) -> std::borrow::Cow<'_, str> {
    if postgres && text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The current time as the database keeps it on every backend: UTC, to the microsecond
/// (PostgreSQL's precision; SQLite would keep nanoseconds), so that a value reads back equal
/// wherever it was stored.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    timestamp(chrono::Utc::now())
}

/// `t` as the database keeps it on every backend: to the microsecond (see [`now`]).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    t.trunc_subsecs(6)
}

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the PostgreSQL database {url}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot open the database at {path}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot create the database directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path} to apply migrations")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot apply the database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a user with the email {0} already exists")]
    EmailTaken(String),
    #[error("a team named {0} already exists")]
    TeamNameTaken(String),
    #[error("this controller's lease (epoch {0}) was taken over by another controller")]
    LeaseLost(i64),
    #[error("a database query failed")]
    Query(#[from] sqlx::Error),
}

/// Opens (creating if needed) the database at `path` with WAL, a busy timeout, `synchronous =
/// NORMAL` and foreign keys on, and applies pending migrations. Safe when several processes start
/// at once: opening (which may switch a new file to WAL, a change SQLite refuses while another
/// connection holds the file) and migrating run under an OS file lock beside the database.
pub async fn connect(path: &Path, max_connections: u32) -> Result<SqlitePool, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let open_err = |source| DbError::Open {
        path: path.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(open_err)?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let lock = setup_lock(path).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(1)
        .acquire_timeout(BUSY_TIMEOUT * 2)
        .connect_with(options)
        .await
        .map_err(open_err)?;
    let migrated = MIGRATOR.run(&pool).await;
    drop(lock); // releases the lock
    migrated?;
    Ok(pool)
}

/// Settings of a PostgreSQL connection pool. TLS and other libpq options (`sslmode`,
/// `sslrootcert`, `application_name`, ...) come with the URL.
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// `statement_timeout` of every connection: the server cancels a statement that runs longer
    /// (`None`: the server's setting).
    pub statement_timeout: Option<Duration>,
}

/// Connects to the PostgreSQL database at `url` and applies pending migrations
/// ([`POSTGRES_MIGRATOR`]). Safe when several processes start at once: the migrator holds a
/// PostgreSQL advisory lock (one per database) while it migrates, so one process applies them
/// and the others wait, then find nothing left to do.
pub async fn connect_postgres(
    url: &str,
    settings: &PostgresSettings,
) -> Result<sqlx::PgPool, DbError> {
    let shown = DatabaseUrl::Postgres(url.to_owned()).to_string();
    let err = |source| DbError::Connect {
        url: shown.clone(),
        source,
    };
    let mut options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(err)?;
    if let Some(timeout) = settings.statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    // One connection first: an unreachable server or a refused login is reported as it is, at
    // once, where the pool would retry until its timeout and say only that it timed out.
    sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(err)?
        .close()
        .await
        .map_err(err)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .min_connections(1)
        .acquire_timeout(BUSY_TIMEOUT * 2)
        .connect_with(options)
        .await
        .map_err(err)?;
    POSTGRES_MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Takes the exclusive OS lock `<db>.migrate.lock`, waiting for another process that holds it.
async fn setup_lock(db_path: &Path) -> Result<std::fs::File, DbError> {
    let lock_path = sibling(db_path, ".migrate.lock");
    let lock_err = |source| DbError::Lock {
        path: lock_path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(lock_err)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| lock_err(std::io::Error::other(e)))?
        .map_err(lock_err)
}

/// Whether the database answers a query (health and readiness checks).
pub async fn ping(ex: impl Into<Exec<'_>>) -> Result<(), DbError> {
    on_exec!(ex, |e| sqlx::query("SELECT 1")
        .execute(e)
        .await
        .map(drop)?);
    Ok(())
}

/// An open database of either backend: what a binary holds once it has connected.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Opens the database at `url` and applies pending migrations: [`connect`] for SQLite
    /// (`max_connections` connections), [`connect_postgres`] for PostgreSQL.
    pub async fn open(url: &DatabaseUrl, postgres: &PostgresSettings) -> Result<Self, DbError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                Ok(Self::Sqlite(connect(path, postgres.max_connections).await?))
            }
            DatabaseUrl::Postgres(url) => {
                Ok(Self::Postgres(connect_postgres(url, postgres).await?))
            }
        }
    }

    /// Where the layer's functions run: the pool.
    pub fn exec(&self) -> Exec<'_> {
        self.into()
    }

    /// Begins a write transaction ([`BeginWrite`]: on SQLite `BEGIN IMMEDIATE`, which holds the
    /// database's write lock until the transaction ends, so begin it just before the writes).
    pub async fn begin_write(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Open connections of the pool, idle or in use.
    pub fn size(&self) -> u32 {
        match self {
            Self::Sqlite(pool) => pool.size(),
            Self::Postgres(pool) => pool.size(),
        }
    }

    /// Open connections of the pool that wait for a query.
    pub fn num_idle(&self) -> usize {
        match self {
            Self::Sqlite(pool) => pool.num_idle(),
            Self::Postgres(pool) => pool.num_idle(),
        }
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

impl From<SqlitePool> for Db {
    fn from(pool: SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

impl From<sqlx::PgPool> for Db {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

impl From<&Db> for Db {
    fn from(db: &Db) -> Self {
        db.clone()
    }
}

impl From<&SqlitePool> for Db {
    fn from(pool: &SqlitePool) -> Self {
        Self::Sqlite(pool.clone())
    }
}

impl From<&sqlx::PgPool> for Db {
    fn from(pool: &sqlx::PgPool) -> Self {
        Self::Postgres(pool.clone())
    }
}

impl<'c> From<&'c Db> for Exec<'c> {
    fn from(db: &'c Db) -> Self {
        match db {
            Db::Sqlite(pool) => Self::SqlitePool(pool),
            Db::Postgres(pool) => Self::PgPool(pool),
        }
    }
}

/// `<db path><suffix>`, e.g. `ci.db.controller.lock`.
pub fn sibling(db_path: &Path, suffix: &str) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether an error is SQLite's unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The shared test helpers, under the name some of this layer's tests still use.
#[cfg(test)]
pub(crate) use crate::testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_to_an_empty_database_and_twice_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/ci.db");
        let pool = connect(&path, 2).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        for table in [
            "api_keys",
            "controller_lease",
            "job_events",
            "job_uploads",
            "jobs",
            "users",
        ] {
            assert!(
                tables.iter().any(|t| t == table),
                "missing table {table}: {tables:?}"
            );
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        pool.close().await;
        // Reconnecting applies nothing new and does not fail.
        let pool = connect(&path, 2).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(applied, MIGRATOR.iter().count() as i64);
    }

    #[tokio::test]
    async fn a_database_url_opens_either_backend_and_ping_answers_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut urls = vec![format!("sqlite://{}", dir.path().join("ci.db").display())];
        if crate::testing::postgres::available() {
            let cluster = crate::testing::postgres::Postgres::shared();
            urls.push(cluster.fresh_database(&format!("t_{}", uuid::Uuid::new_v4().simple())));
        }
        let settings = PostgresSettings {
            max_connections: 2,
            statement_timeout: None,
        };
        for url in urls {
            let db = Db::open(&url.parse().unwrap(), &settings).await.unwrap();
            assert_eq!(
                matches!(db, Db::Postgres(_)),
                url.starts_with("postgres"),
                "{url}"
            );
            ping(&db).await.unwrap();
            users::create(&db, "Ada", "ada@example.com").await.unwrap();
            db.close().await;
            assert!(ping(&db).await.is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn ping_answers_until_the_pool_is_closed() {
        let (_dir, pool) = testing::temp_db().await;
        ping(&pool).await.unwrap();
        pool.close().await;
        assert!(matches!(ping(&pool).await, Err(DbError::Query(_))));
    }
}
