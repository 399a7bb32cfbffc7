//! `ci-admin import-legacy`: copies a database of the Python prototype that `ci` replaces
//! (`ci-system`) into ours.
//!
//! What the prototype's `SQLiteJobRepository` writes:
//!
//! - `users(id TEXT, name TEXT, email TEXT, created_at TEXT, is_active INTEGER)`;
//! - `api_keys(id TEXT, user_id TEXT, key_hash TEXT, name TEXT NULL, created_at TEXT,
//!   last_used_at TEXT NULL, is_active INTEGER)`, `key_hash` being the SHA-256 hex of the whole
//!   key (`ci_` + 40 URL-safe base64 characters), as ours;
//! - `jobs(id TEXT, status TEXT, success INTEGER NULL, start_time TEXT NULL, end_time TEXT NULL,
//!   container_id TEXT, zip_file_path TEXT, user_id TEXT NULL)`, `status` one of `queued`,
//!   `running`, `completed` (`success` says whether the tests passed), `failed`, `cancelled`;
//! - `events(id INTEGER, job_id TEXT, type TEXT, data TEXT NULL, success INTEGER NULL,
//!   timestamp TEXT)`, `type` `log` (`data` is output text with its newline) or `complete`.
//!
//! Ids are `uuid4` strings, booleans 0/1. Timestamps are Python `isoformat()` text:
//! `datetime.now(UTC)` for users and keys (`2025-10-12T09:15:02.123456+00:00`), a naive
//! `datetime.utcnow()` for jobs and events (`2025-10-12T09:15:02.123456`, UTC); the fraction is
//! left out when it is zero. A database from before authentication has no `users` and
//! `api_keys` tables and no `jobs.user_id` column; `jobs.user_id` is nullable anyway.
//!
//! The file is opened read-only and read in one snapshot. Everything is written in one
//! `BEGIN IMMEDIATE` transaction, so a failed import leaves nothing behind, and what is already
//! here (the same user id or email, the same key hash, the same job id) is left alone, so a
//! second run changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use super::events::{self, NewEvent};
use super::{api_keys, jobs, on_exec, users, BeginWrite as _, DbError, Exec};
use crate::api::Outcome;
use crate::{ApiKeyId, JobId, JobStatus, LogStream, UserId};

/// The reason of an imported job that had not finished (`queued` or `running`): it is `lost`.
pub const UNFINISHED_REASON: &str = "imported unfinished";
/// The reason of a job the prototype marked `failed` (it could not run it): it is an `error`.
pub const FAILED_REASON: &str = "the prototype could not run this job";
/// The reason of a job cancelled in the prototype.
pub const CANCELLED_REASON: &str = "cancelled in the prototype";
/// The name of an imported key that had none (the prototype listed it so).
pub const UNNAMED_KEY: &str = "(unnamed)";
/// The task of every imported job: the prototype only ran tests.
const TASK: &str = "test";

const USERS: Table = Table {
    name: "users",
    columns: &["id", "name", "email", "created_at", "is_active"],
};
const API_KEYS: Table = Table {
    name: "api_keys",
    columns: &[
        "id",
        "user_id",
        "key_hash",
        "name",
        "created_at",
        "last_used_at",
        "is_active",
    ],
};
const JOBS: Table = Table {
    name: "jobs",
    columns: &["id", "status", "success", "start_time", "end_time"],
};
const EVENTS: Table = Table {
    name: "events",
    columns: &["id", "job_id", "type", "data", "timestamp"],
};

/// What a prototype database looks like, for error messages.
const EXPECTED: &str = "expected the Python prototype's SQLite database, with the tables \
    jobs(id, status, success, start_time, end_time, user_id) and \
    events(id, job_id, type, data, success, timestamp), and (unless it is from before \
    authentication) users(id, name, email, created_at, is_active) and \
    api_keys(id, user_id, key_hash, name, created_at, last_used_at, is_active)";

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(
        "no file at {}: pass the prototype's database (its CI_DB_PATH: by default \
         ~/.ci/jobs.db for its ci-admin, ci_jobs.db in its server's folder)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{} is not a database of the prototype: {problem}; {EXPECTED}", path.display())]
    NotPrototype {
        path: PathBuf,
        problem: String,
        #[source]
        source: Option<sqlx::Error>,
    },
    #[error("cannot read the prototype's database {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the prototype's {table} row {id:?} has an unreadable {column} {value:?} (expected a \
         Python isoformat() time such as 2025-10-12T09:15:02.123456); nothing was imported"
    )]
    BadTime {
        table: &'static str,
        id: String,
        column: &'static str,
        value: String,
    },
    #[error(
        "--owner-email {0}: there is no such user here nor in the prototype's database (see \
         `ci-admin user list`); nothing was imported"
    )]
    UnknownOwner(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What one import did. A second run over the same files reports everything as already there
/// and `changed: false`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    /// Whether anything was written (false: the transaction was rolled back unused).
    pub changed: bool,
    pub users: Tally,
    pub keys: Tally,
    pub jobs: Tally,
    /// Log lines of the jobs imported by this run.
    pub log_lines: i64,
    /// Keys imported as revoked (inactive in the prototype).
    pub revoked_keys: i64,
    /// Jobs imported as `lost` because they were still `queued` or `running`.
    pub unfinished_jobs: i64,
    /// Jobs without an owner imported for the `--owner-email` user.
    pub jobs_given_to_owner: i64,
    pub skipped: Skipped,
    /// Prototype users that are a user of ours with the same email (and another id): their keys
    /// and jobs went to ours.
    pub matched_by_email: Vec<EmailMatch>,
    /// Prototype ids that are not UUIDs, and the ids derived from them.
    pub new_ids: Vec<NewId>,
    /// The database has no users and keys (the prototype before authentication).
    pub before_authentication: bool,
}

/// Rows imported by this run, and rows that were here already (left alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub imported: i64,
    pub already_there: i64,
}

/// Rows that were not imported, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Jobs from before authentication (no `user_id`) when no `--owner-email` was given.
    pub jobs_without_owner: i64,
    /// Jobs whose `user_id` is no user of the prototype's.
    pub jobs_of_unknown_users: i64,
    /// Keys whose `user_id` is no user of the prototype's.
    pub keys_of_unknown_users: i64,
    /// Keys whose `key_hash` is not a SHA-256 hex digest.
    pub keys_with_bad_hash: i64,
    /// Events of imported jobs whose type is neither `log` nor `complete`.
    pub events_of_other_types: i64,
}

impl Skipped {
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmailMatch {
    pub prototype_id: String,
    pub email: String,
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewId {
    /// `user`, `key` or `job`.
    pub kind: &'static str,
    pub prototype_id: String,
    pub id: Uuid,
}

/// A prototype database, opened read-only and checked to have the prototype's tables.
pub struct Prototype {
    path: PathBuf,
    conn: SqliteConnection,
    /// It has `users` and `api_keys` (the prototype with authentication).
    authenticated: bool,
    /// Its `jobs` table has `user_id`.
    jobs_have_owners: bool,
}

impl std::fmt::Debug for Prototype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prototype")
            .field("path", &self.path)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

impl Prototype {
    /// Opens `path` read-only (it is never written) and checks its tables and columns.
    pub async fn open(path: &Path) -> Result<Self, LegacyError> {
        if !path.is_file() {
            return Err(LegacyError::Missing {
                path: path.to_owned(),
            });
        }
        let unreadable = |source: sqlx::Error| match &source {
            // SQLite's own words ("file is not a database") say it all.
            sqlx::Error::Database(db) => LegacyError::NotPrototype {
                path: path.to_owned(),
                problem: format!("it cannot be read as an SQLite database ({})", db.message()),
                source: None,
            },
            _ => LegacyError::NotPrototype {
                path: path.to_owned(),
                problem: "it cannot be read as an SQLite database".to_owned(),
                source: Some(source),
            },
        };
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
            .map_err(unreadable)?;
        let wrong = |problem: String| LegacyError::NotPrototype {
            path: path.to_owned(),
            problem,
            source: None,
        };
        let job_columns = columns(&mut conn, JOBS.name).await.map_err(unreadable)?;
        check_columns(&JOBS, &job_columns).map_err(wrong)?;
        let event_columns = columns(&mut conn, EVENTS.name).await.map_err(unreadable)?;
        check_columns(&EVENTS, &event_columns).map_err(wrong)?;
        let users = columns(&mut conn, USERS.name).await.map_err(unreadable)?;
        let keys = columns(&mut conn, API_KEYS.name)
            .await
            .map_err(unreadable)?;
        let authenticated = match (users.is_empty(), keys.is_empty()) {
            (true, true) => false,
            (false, true) => return Err(wrong("it has a users table but no api_keys".into())),
            (true, false) => return Err(wrong("it has an api_keys table but no users".into())),
            (false, false) => {
                check_columns(&USERS, &users).map_err(wrong)?;
                check_columns(&API_KEYS, &keys).map_err(wrong)?;
                true
            }
        };
        let jobs_have_owners = job_columns
            .iter()
            .any(|c| c.eq_ignore_ascii_case("user_id"));
        Ok(Self {
            path: path.to_owned(),
            conn,
            authenticated,
            jobs_have_owners,
        })
    }

    /// Copies the prototype's users, keys and jobs (with their logs) into `pool`'s database in
    /// one transaction. Jobs without an owner go to the user with `owner_email` (ours, or one
    /// imported by this run), or are skipped without it.
    pub async fn import_into(
        mut self,
        db: impl Into<Exec<'_>>,
        owner_email: Option<&str>,
    ) -> Result<ImportSummary, LegacyError> {
        // One write transaction of ours ([`super::BeginWrite`]), committed only when something
        // was imported.
        let result = on_exec!(db, |e| {
            let mut tx = e.begin_write().await.map_err(DbError::from)?;
            let summary = self.import(Exec::from(&mut tx), owner_email).await?;
            if summary.changed {
                tx.commit().await.map_err(DbError::from)?;
            } else {
                tx.rollback().await.map_err(DbError::from)?;
            }
            Ok::<_, LegacyError>(summary)
        });
        let _ = self.conn.close().await;
        result
    }

    /// Imports everything in the transaction `tx`; the caller commits.
    async fn import(
        &mut self,
        mut tx: Exec<'_>,
        owner_email: Option<&str>,
    ) -> Result<ImportSummary, LegacyError> {
        let now = Utc::now();
        let path = self.path.clone();
        let read = |source| LegacyError::Read {
            path: path.clone(),
            source,
        };
        let mut summary = ImportSummary {
            before_authentication: !self.authenticated,
            ..ImportSummary::default()
        };
        // One snapshot of theirs.
        let mut src = self.conn.begin().await.map_err(read)?;

        // Their user id → ours.
        let mut owners: HashMap<String, UserId> = HashMap::new();
        if self.authenticated {
            let rows: Vec<ProtoUser> = sqlx::query_as(
                "SELECT id, name, email, created_at, is_active FROM users ORDER BY rowid",
            )
            .fetch_all(&mut *src)
            .await
            .map_err(read)?;
            for row in rows {
                let user_id = import_user(tx.reborrow(), &row, &mut summary).await?;
                owners.insert(row.id, user_id);
            }
            let rows: Vec<ProtoKey> = sqlx::query_as(
                "SELECT id, user_id, key_hash, name, created_at, last_used_at, is_active
                 FROM api_keys ORDER BY rowid",
            )
            .fetch_all(&mut *src)
            .await
            .map_err(read)?;
            for row in rows {
                import_key(tx.reborrow(), &row, &owners, now, &mut summary).await?;
            }
        }
        let owner = match owner_email {
            Some(email) => Some(
                users::find_by_email(tx.reborrow(), email.trim())
                    .await?
                    .ok_or_else(|| LegacyError::UnknownOwner(email.to_owned()))?
                    .id,
            ),
            None => None,
        };

        let sql = format!(
            "SELECT rowid AS num, id, status, success, start_time, end_time, {} AS user_id
             FROM jobs",
            if self.jobs_have_owners {
                "user_id"
            } else {
                "NULL"
            }
        );
        let rows: Vec<ProtoJob> = sqlx::query_as(&sql)
            .fetch_all(&mut *src)
            .await
            .map_err(read)?;
        let mut planned = Vec::with_capacity(rows.len());
        for row in rows {
            planned.push(PlannedJob::new(row, now)?);
        }
        // Our `num` orders listings: insert them oldest first.
        planned.sort_by_key(|job| (job.created_at, job.num));
        for job in planned {
            let user_id = match &job.user_id {
                None => match owner {
                    Some(owner) => {
                        summary.jobs_given_to_owner += 1;
                        owner
                    }
                    None => {
                        summary.skipped.jobs_without_owner += 1;
                        continue;
                    }
                },
                Some(theirs) => match owners.get(theirs) {
                    Some(ours) => *ours,
                    None => {
                        summary.skipped.jobs_of_unknown_users += 1;
                        continue;
                    }
                },
            };
            if jobs::get(tx.reborrow(), job.id).await?.is_some() {
                summary.jobs.already_there += 1;
                continue;
            }
            let rows: Vec<ProtoEvent> = sqlx::query_as(
                "SELECT id, type AS kind, data, timestamp FROM events WHERE job_id = ? ORDER BY id",
            )
            .bind(&job.their_id)
            .fetch_all(&mut *src)
            .await
            .map_err(read)?;
            import_job(tx.reborrow(), &job, user_id, &rows, now, &mut summary).await?;
        }

        summary.changed =
            summary.users.imported + summary.keys.imported + summary.jobs.imported > 0;
        src.rollback().await.map_err(read)?;
        Ok(summary)
    }
}

/// The table's column names (none when there is no such table).
async fn columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(conn)
        .await
}

fn check_columns(table: &Table, found: &[String]) -> Result<(), String> {
    if found.is_empty() {
        return Err(format!("it has no {} table", table.name));
    }
    let missing: Vec<&str> = table
        .columns
        .iter()
        .copied()
        .filter(|c| !found.iter().any(|f| f.eq_ignore_ascii_case(c)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "its {} table has no column{} {}",
            table.name,
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ))
    }
}

#[derive(sqlx::FromRow)]
struct ProtoUser {
    id: String,
    name: String,
    email: String,
    created_at: String,
    is_active: i64,
}

#[derive(sqlx::FromRow)]
struct ProtoKey {
    id: String,
    user_id: String,
    key_hash: String,
    name: Option<String>,
    created_at: String,
    last_used_at: Option<String>,
    is_active: i64,
}

#[derive(sqlx::FromRow)]
struct ProtoJob {
    num: i64,
    id: String,
    status: String,
    success: Option<i64>,
    start_time: Option<String>,
    end_time: Option<String>,
    user_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ProtoEvent {
    id: i64,
    kind: String,
    data: Option<String>,
    timestamp: String,
}

/// Finds or creates our user for one of theirs: the same id, else the same email (ours is kept),
/// else a new user with their id, name, email, state and creation time.
async fn import_user(
    mut conn: Exec<'_>,
    row: &ProtoUser,
    summary: &mut ImportSummary,
) -> Result<UserId, LegacyError> {
    let (id, derived) = uuid_for("user", &row.id);
    let id = UserId(id);
    if users::get(conn.reborrow(), id).await?.is_some() {
        summary.users.already_there += 1;
        return Ok(id);
    }
    if let Some(ours) = users::find_by_email(conn.reborrow(), &row.email).await? {
        summary.users.already_there += 1;
        summary.matched_by_email.push(EmailMatch {
            prototype_id: row.id.clone(),
            email: row.email.clone(),
            user_id: ours.id,
        });
        return Ok(ours.id);
    }
    let created_at = required_time("users", &row.id, "created_at", &row.created_at)?;
    on_exec!(conn, |e| sqlx::query(
        "INSERT INTO users (id, name, email, active, created_at) VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(id)
    .bind(&row.name)
    .bind(&row.email)
    .bind(row.is_active != 0)
    .bind(super::timestamp(created_at))
    .execute(e)
    .await
    .map(drop)
    .map_err(DbError::from)?);
    summary.users.imported += 1;
    if derived {
        summary.new_ids.push(NewId {
            kind: "user",
            prototype_id: row.id.clone(),
            id: id.0,
        });
    }
    Ok(id)
}

/// Copies one key: their hash is ours (SHA-256 hex of the whole key), with no hint (no part of
/// the key is known). An inactive key is revoked as of `now`, the import: the prototype kept no
/// revocation time, and its creation time could precede a recorded use.
async fn import_key(
    mut conn: Exec<'_>,
    row: &ProtoKey,
    owners: &HashMap<String, UserId>,
    now: DateTime<Utc>,
    summary: &mut ImportSummary,
) -> Result<(), LegacyError> {
    let hash = row.key_hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        summary.skipped.keys_with_bad_hash += 1;
        return Ok(());
    }
    let known: bool = on_exec!(conn.reborrow(), |e| sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1)"
    )
    .bind(&hash)
    .fetch_one(e)
    .await
    .map_err(DbError::from)?);
    if known {
        summary.keys.already_there += 1;
        return Ok(());
    }
    let Some(user_id) = owners.get(&row.user_id) else {
        summary.skipped.keys_of_unknown_users += 1;
        return Ok(());
    };
    let created_at = required_time("api_keys", &row.id, "created_at", &row.created_at)?;
    let last_used_at = optional_time(
        "api_keys",
        &row.id,
        "last_used_at",
        row.last_used_at.as_deref(),
    )?;
    let (id, derived) = uuid_for("key", &row.id);
    let mut id = ApiKeyId(id);
    if api_keys::get(conn.reborrow(), id).await?.is_some() {
        id = ApiKeyId::new();
    }
    let revoked_at = (row.is_active == 0).then_some(now);
    let name = row
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(UNNAMED_KEY);
    on_exec!(conn, |e| sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, hint, key_hash, created_at, last_used_at,
                               revoked_at)
         VALUES ($1, $2, $3, '', $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(user_id)
    .bind(name)
    .bind(&hash)
    .bind(super::timestamp(created_at))
    .bind(last_used_at.map(super::timestamp))
    .bind(revoked_at.map(super::timestamp))
    .execute(e)
    .await
    .map(drop)
    .map_err(DbError::from)?);
    summary.keys.imported += 1;
    summary.revoked_keys += i64::from(revoked_at.is_some());
    if derived {
        summary.new_ids.push(NewId {
            kind: "key",
            prototype_id: row.id.clone(),
            id: id.0,
        });
    }
    Ok(())
}

/// One of their jobs, its times read.
struct PlannedJob {
    num: i64,
    their_id: String,
    id: JobId,
    derived_id: bool,
    user_id: Option<String>,
    outcome: Outcome,
    unfinished: bool,
    /// Their start time, else the import's.
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl PlannedJob {
    fn new(row: ProtoJob, now: DateTime<Utc>) -> Result<Self, LegacyError> {
        let started_at = optional_time("jobs", &row.id, "start_time", row.start_time.as_deref())?;
        let finished_at = optional_time("jobs", &row.id, "end_time", row.end_time.as_deref())?;
        let (id, derived_id) = uuid_for("job", &row.id);
        Ok(Self {
            num: row.num,
            id: JobId(id),
            derived_id,
            user_id: row.user_id,
            outcome: outcome(&row.status, row.success.map(|s| s != 0)),
            unfinished: matches!(row.status.as_str(), "queued" | "running"),
            created_at: started_at.unwrap_or(now),
            started_at,
            finished_at,
            their_id: row.id,
        })
    }
}

/// Our final state for one of theirs.
fn outcome(status: &str, success: Option<bool>) -> Outcome {
    match status {
        "completed" if success == Some(true) => Outcome::new(JobStatus::Passed),
        "completed" => Outcome::new(JobStatus::Failed),
        "failed" => Outcome::new(JobStatus::Error).with_reason(FAILED_REASON),
        "cancelled" => Outcome::new(JobStatus::Cancelled).with_reason(CANCELLED_REASON),
        "queued" | "running" => Outcome::new(JobStatus::Lost).with_reason(UNFINISHED_REASON),
        other => Outcome::new(JobStatus::Lost).with_reason(format!(
            "imported with the prototype's unknown status {other:?}"
        )),
    }
}

/// Writes one finished job of ours and its events, as a job of ours that ran would have them:
/// `running`, the log lines, then the terminal `status` and `complete` events.
async fn import_job(
    mut conn: Exec<'_>,
    job: &PlannedJob,
    user_id: UserId,
    rows: &[ProtoEvent],
    now: DateTime<Utc>,
    summary: &mut ImportSummary,
) -> Result<(), LegacyError> {
    let mut running = NewEvent::status(JobStatus::Running, None);
    running.ts = job.created_at;
    let mut list = vec![running];
    let (mut lines, mut bytes, mut completed_at) = (0_i64, 0_i64, None);
    for row in rows {
        let ts = required_time("events", &row.id.to_string(), "timestamp", &row.timestamp)?;
        match row.kind.as_str() {
            "log" => {
                for line in log_lines(row.data.as_deref().unwrap_or_default()) {
                    lines += 1;
                    bytes += line.len() as i64;
                    list.push(NewEvent::log(LogStream::Stdout, ts, line));
                }
            }
            "complete" => completed_at = Some(ts),
            _ => summary.skipped.events_of_other_types += 1,
        }
    }
    let ended_at = job.finished_at.or(completed_at).unwrap_or(now);
    for mut event in NewEvent::job_end(&job.outcome) {
        event.ts = ended_at;
        list.push(event);
    }
    on_exec!(conn.reborrow(), |e| sqlx::query(
        "INSERT INTO jobs (id, user_id, task, status, reason, exit_code, attempt, created_at,
                           started_at, finished_at, upload_bytes, log_lines, log_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, 0, $10, $11)",
    )
    .bind(job.id)
    .bind(user_id)
    .bind(TASK)
    .bind(job.outcome.status)
    .bind(&job.outcome.reason)
    .bind(job.outcome.exit_code)
    .bind(super::timestamp(job.created_at))
    .bind(job.started_at.map(super::timestamp))
    .bind(job.finished_at.map(super::timestamp))
    .bind(lines)
    .bind(bytes)
    .execute(e)
    .await
    .map(drop)
    .map_err(DbError::from)?);
    events::append(conn, job.id, &list).await?;
    summary.jobs.imported += 1;
    summary.log_lines += lines;
    summary.unfinished_jobs += i64::from(job.unfinished);
    if job.derived_id {
        summary.new_ids.push(NewId {
            kind: "job",
            prototype_id: job.their_id.clone(),
            id: job.id.0,
        });
    }
    Ok(())
}

/// The lines of one of their `log` events: its text carries each line with its newline (ours
/// are stored without), and may hold several lines or end without a newline.
fn log_lines(data: &str) -> impl Iterator<Item = &str> {
    let body = data.strip_suffix('\n').unwrap_or(data);
    (!data.is_empty())
        .then(|| body.split('\n'))
        .into_iter()
        .flatten()
}

/// Their id as a UUID: itself (they are `uuid4` strings), or, for one that is not, a UUID
/// derived from it, the same on every run so that a second import finds it.
fn uuid_for(kind: &str, text: &str) -> (Uuid, bool) {
    match Uuid::parse_str(text.trim()) {
        Ok(id) => (id, false),
        Err(_) => {
            let digest = Sha256::digest(format!("ci import-legacy {kind} {text}"));
            let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
            (uuid::Builder::from_custom_bytes(bytes).into_uuid(), true)
        }
    }
}

/// A Python `isoformat()` time: with an offset (aware), or without (naive: UTC, as the
/// prototype wrote `datetime.utcnow()`).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|at| at.and_utc())
}

fn required_time(
    table: &'static str,
    id: &str,
    column: &'static str,
    value: &str,
) -> Result<DateTime<Utc>, LegacyError> {
    parse_time(value).ok_or_else(|| LegacyError::BadTime {
        table,
        id: id.to_owned(),
        column,
        value: value.to_owned(),
    })
}

fn optional_time(
    table: &'static str,
    id: &str,
    column: &'static str,
    value: Option<&str>,
) -> Result<Option<DateTime<Utc>>, LegacyError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => required_time(table, id, column, value).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StreamEvent;
    use crate::db::testing::temp_db;
    use crate::keys::{sha256_hex, KeyShape, SecretKey};
    use crate::EventKind;
    use sqlx::SqlitePool;

    /// The prototype's schema as its `SQLiteJobRepository.initialize()` creates it.
    const SCHEMA: &str = "
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT UNIQUE NOT NULL,
            created_at TEXT NOT NULL,
            is_active INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            key_hash TEXT UNIQUE NOT NULL,
            name TEXT,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            is_active INTEGER NOT NULL DEFAULT 1,
            FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
        );
        CREATE INDEX idx_api_keys_key_hash ON api_keys(key_hash);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            success INTEGER,
            start_time TEXT,
            end_time TEXT,
            container_id TEXT,
            zip_file_path TEXT,
            user_id TEXT,
            FOREIGN KEY (user_id) REFERENCES users(id)
        );
        CREATE INDEX idx_jobs_user_id ON jobs(user_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT,
            success INTEGER,
            timestamp TEXT NOT NULL,
            FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE
        );
        CREATE INDEX idx_events_job_id ON events(job_id);";

    /// The prototype before authentication: no users, no keys, jobs without `user_id`.
    const SCHEMA_BEFORE_AUTH: &str = "
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            success INTEGER,
            start_time TEXT,
            end_time TEXT,
            container_id TEXT,
            zip_file_path TEXT
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            data TEXT,
            success INTEGER,
            timestamp TEXT NOT NULL,
            FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE
        );";

    const ADA: &str = "6f1c2a1e-0d7b-4c1e-9a55-1b8f3c2d4e01";
    const BOB: &str = "0b6d7c8e-2f3a-4b5c-8d9e-a1b2c3d4e5f6";
    const ACTIVE_KEY: &str = "ci_Zk3-xQ9_aB7cD2eF4gH6iJ8kL0mN1oP3qR5sT7uV";
    const REVOKED_KEY: &str = "ci_AAAAbbbbCCCCdddd-___eeeeFFFFgggg01234567";
    const PASSED: &str = "11111111-1111-4111-8111-111111111111";
    const FAILED: &str = "22222222-2222-4222-8222-222222222222";
    const CANCELLED: &str = "33333333-3333-4333-8333-333333333333";
    const BROKEN: &str = "44444444-4444-4444-8444-444444444444";
    const RUNNING: &str = "55555555-5555-4555-8555-555555555555";
    const QUEUED: &str = "66666666-6666-4666-8666-666666666666";
    const ORPHAN: &str = "77777777-7777-4777-8777-777777777777";

    /// A database file as the prototype leaves it (in `dir`).
    struct Proto {
        path: PathBuf,
        pool: SqlitePool,
    }

    impl Proto {
        async fn new(dir: &Path, schema: &str) -> Self {
            let path = dir.join("ci_jobs.db");
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            sqlx::raw_sql(schema).execute(&pool).await.unwrap();
            Self { path, pool }
        }

        async fn sql(&self, sql: &str) {
            sqlx::raw_sql(sql).execute(&self.pool).await.unwrap();
        }

        /// Ada (two keys: one active, one revoked), Bob (inactive, no key), and jobs in every
        /// state of theirs, added out of start order, with rows as the prototype writes them.
        async fn populated(dir: &Path) -> Self {
            let proto = Self::new(dir, SCHEMA).await;
            let (active, revoked) = (
                sha256_hex(ACTIVE_KEY.as_bytes()),
                sha256_hex(REVOKED_KEY.as_bytes()),
            );
            proto
                .sql(&format!(
                    "INSERT INTO users (id, name, email, created_at, is_active) VALUES
                        ('{ADA}', 'Ada', 'ada@example.com', '2025-10-12T09:15:02.123456+00:00', 1),
                        ('{BOB}', 'Bob', 'bob@example.com', '2025-10-12T09:15:03.500000+00:00', 0);
                    INSERT INTO api_keys
                        (id, user_id, key_hash, name, created_at, last_used_at, is_active) VALUES
                        ('9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d', '{ADA}', '{active}', 'laptop',
                         '2025-10-12T09:16:00+00:00', '2025-10-14T08:00:00.500000+00:00', 1),
                        ('8a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d', '{ADA}', '{revoked}', NULL,
                         '2025-10-12T09:16:00+00:00', NULL, 0);
                    INSERT INTO jobs (id, status, success, start_time, end_time, container_id,
                                      zip_file_path, user_id) VALUES
                        ('{FAILED}', 'completed', 0, '2025-10-13T10:00:00',
                         '2025-10-13T10:00:09.250000', 'c0ffee', NULL, '{ADA}'),
                        ('{PASSED}', 'completed', 1, '2025-10-13T09:00:00.000001',
                         '2025-10-13T09:00:05.500000', 'c0ffee', NULL, '{ADA}'),
                        ('{CANCELLED}', 'cancelled', NULL, '2025-10-13T11:00:00', NULL, NULL, NULL,
                         '{ADA}'),
                        ('{BROKEN}', 'failed', 0, '2025-10-13T12:00:00', '2025-10-13T12:00:01',
                         NULL, NULL, '{BOB}'),
                        ('{RUNNING}', 'running', NULL, '2025-10-13T13:00:00', NULL, 'c0ffee', NULL,
                         '{ADA}'),
                        ('{QUEUED}', 'queued', NULL, NULL, NULL, NULL, '/tmp/ci_job_x.zip', '{ADA}'),
                        ('{ORPHAN}', 'completed', 1, '2025-10-01T08:00:00', '2025-10-01T08:00:01',
                         NULL, NULL, NULL);
                    INSERT INTO events (job_id, type, data, success, timestamp) VALUES
                        ('{PASSED}', 'log', 'collected 2 items\n', NULL, '2025-10-13T09:00:01.000100'),
                        ('{PASSED}', 'log', 'test_a.py::test_x PASSED\ntest_a.py::test_ü ✓ PASSED\n',
                         NULL, '2025-10-13T09:00:01.000100'),
                        ('{PASSED}', 'log', '\n', NULL, '2025-10-13T09:00:01.000100'),
                        ('{PASSED}', 'log', '2 passed in 0.01s', NULL, '2025-10-13T09:00:01.000100'),
                        ('{PASSED}', 'complete', NULL, 1, '2025-10-13T09:00:05.400000'),
                        ('{FAILED}', 'log', '1 failed\n', NULL, '2025-10-13T10:00:08'),
                        ('{FAILED}', 'complete', NULL, 0, '2025-10-13T10:00:09'),
                        ('{RUNNING}', 'log', 'still going\n', NULL, '2025-10-13T13:00:01'),
                        ('{RUNNING}', 'progress', '?', NULL, '2025-10-13T13:00:02');"
                ))
                .await;
            proto
        }

        fn bytes(&self) -> Vec<u8> {
            std::fs::read(&self.path).unwrap()
        }
    }

    async fn import(
        pool: &SqlitePool,
        path: &Path,
        owner: Option<&str>,
    ) -> Result<ImportSummary, LegacyError> {
        Prototype::open(path).await?.import_into(pool, owner).await
    }

    fn time(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn id(text: &str) -> JobId {
        text.parse().unwrap()
    }

    async fn count(pool: &SqlitePool, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_import_into_postgresql_stores_what_one_into_sqlite_does() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::populated(dir.path()).await;
        proto.pool.close().await;
        let mut imported = Vec::new();
        for db in crate::testing::backends().await {
            let summary = Prototype::open(&proto.path)
                .await
                .unwrap()
                .import_into(db.exec(), Some("ada@example.com"))
                .await
                .unwrap();
            let passed = jobs::get(db.exec(), id(PASSED)).await.unwrap().unwrap();
            let lines: Vec<String> = events::list_after(db.exec(), id(PASSED), 0, 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.line())
                .collect();
            let again = Prototype::open(&proto.path)
                .await
                .unwrap()
                .import_into(db.exec(), Some("ada@example.com"))
                .await
                .unwrap();
            assert!(!again.changed, "{db:?}: a second run changes nothing");
            imported.push((
                format!("{db:?}"),
                serde_json::to_value(&summary).unwrap(),
                (passed.status, passed.created_at, passed.finished_at),
                lines,
            ));
        }
        if let [sqlite, postgres] = &imported[..] {
            assert_eq!(sqlite.1, postgres.1, "the summaries");
            assert_eq!(sqlite.2, postgres.2, "the passed job");
            assert_eq!(sqlite.3, postgres.3, "its log");
            assert!(sqlite.3.iter().any(|l| l.contains("test_ü ✓ PASSED")));
        } else {
            assert_eq!(imported.len(), 2, "SQLite and PostgreSQL");
        }
    }

    #[tokio::test]
    async fn imports_users_keys_and_jobs_with_their_logs_and_a_second_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::populated(dir.path()).await;
        proto.pool.close().await;
        let before = proto.bytes();
        let (_ours, pool) = temp_db().await;

        let summary = import(&pool, &proto.path, None).await.unwrap();
        assert!(summary.changed);
        assert_eq!(
            summary.users,
            Tally {
                imported: 2,
                already_there: 0
            }
        );
        assert_eq!(
            summary.keys,
            Tally {
                imported: 2,
                already_there: 0
            }
        );
        assert_eq!(summary.revoked_keys, 1);
        assert_eq!(
            summary.jobs,
            Tally {
                imported: 6,
                already_there: 0
            }
        );
        assert_eq!(summary.unfinished_jobs, 2);
        assert_eq!(summary.log_lines, 7);
        assert_eq!(summary.skipped.jobs_without_owner, 1);
        assert_eq!(summary.skipped.events_of_other_types, 1);
        assert!(!summary.before_authentication);
        assert!(summary.new_ids.is_empty() && summary.matched_by_email.is_empty());

        // Users keep their ids, names, state and creation time.
        let ada = users::get(&pool, ADA.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ada.name.as_str(), ada.email.as_str(), ada.active),
            ("Ada", "ada@example.com", true)
        );
        assert_eq!(ada.created_at, time("2025-10-12T09:15:02.123456+00:00"));
        let bob = users::get(&pool, BOB.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!bob.active);

        // Their keys work as they are: looked up by the same hash; the inactive one is revoked.
        let active = SecretKey::parse(ACTIVE_KEY).unwrap();
        assert_eq!(active.shape(), KeyShape::Prototype);
        let (key, owner) = api_keys::find_by_secret(&pool, &active)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.id, ada.id);
        assert_eq!(key.state(Utc::now()), api_keys::KeyState::Active);
        assert_eq!((key.name.as_str(), key.hint.as_str()), ("laptop", ""));
        assert_eq!(key.created_at, time("2025-10-12T09:16:00+00:00"));
        assert_eq!(
            key.last_used_at,
            Some(time("2025-10-14T08:00:00.500000+00:00"))
        );
        let revoked = SecretKey::parse(REVOKED_KEY).unwrap();
        let (key, _) = api_keys::find_by_secret(&pool, &revoked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.state(Utc::now()), api_keys::KeyState::Revoked);
        assert_eq!(key.name, UNNAMED_KEY);
        assert!(key.revoked_at.unwrap() >= key.created_at);

        // Jobs in start order (the queued one, never started, last), with their states and dates.
        let listed = jobs::list_for_user(&pool, ada.id, 50, None).await.unwrap();
        let order: Vec<JobId> = listed.iter().rev().map(|j| j.id).collect();
        assert_eq!(order, [PASSED, FAILED, CANCELLED, RUNNING, QUEUED].map(id));
        let states: Vec<(JobStatus, Option<&str>)> = listed
            .iter()
            .rev()
            .map(|j| (j.status, j.reason.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                (JobStatus::Passed, None),
                (JobStatus::Failed, None),
                (JobStatus::Cancelled, Some(CANCELLED_REASON)),
                (JobStatus::Lost, Some(UNFINISHED_REASON)),
                (JobStatus::Lost, Some(UNFINISHED_REASON)),
            ]
        );
        let broken = jobs::list_for_user(&pool, bob.id, 50, None).await.unwrap();
        assert_eq!(broken.len(), 1);
        assert_eq!(
            (broken[0].status, broken[0].reason.as_deref()),
            (JobStatus::Error, Some(FAILED_REASON))
        );

        let passed = jobs::get(&pool, id(PASSED)).await.unwrap().unwrap();
        assert_eq!(passed.created_at, time("2025-10-13T09:00:00.000001"));
        assert_eq!(passed.started_at, Some(time("2025-10-13T09:00:00.000001")));
        assert_eq!(passed.finished_at, Some(time("2025-10-13T09:00:05.500000")));
        assert_eq!(
            (passed.task.as_str(), passed.attempt, passed.upload_bytes),
            ("test", 0, 0)
        );
        assert_eq!(passed.log_lines, 5);
        let texts = [
            "collected 2 items",
            "test_a.py::test_x PASSED",
            "test_a.py::test_ü ✓ PASSED",
            "",
            "2 passed in 0.01s",
        ];
        // Lines counted as the controller counts them: bytes of the text, without the newline.
        assert_eq!(
            passed.log_bytes,
            texts.iter().map(|t| t.len() as i64).sum::<i64>()
        );
        assert!(crate::db::uploads::get(&pool, passed.id)
            .await
            .unwrap()
            .is_none());

        // running, the lines, then the terminal events exactly as a job of ours ends.
        let events = events::list_after(&pool, passed.id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        assert_eq!(events[0].kind, EventKind::Status);
        assert_eq!(events[0].text, "running");
        assert_eq!(events[0].ts, passed.created_at);
        let logged: Vec<&str> = events[1..6].iter().map(|e| e.text.as_str()).collect();
        assert_eq!(logged, texts);
        assert!(events[1..6].iter().all(|e| e.kind == EventKind::Log
            && e.stream == Some(LogStream::Stdout)
            && e.ts == time("2025-10-13T09:00:01.000100")));
        let outcome = Outcome::new(JobStatus::Passed);
        let status = NewEvent::status(JobStatus::Passed, None);
        let complete = NewEvent::complete(&outcome);
        assert_eq!(
            (events[6].kind, &events[6].text, &events[6].data),
            (status.kind, &status.text, &status.data)
        );
        assert_eq!(
            (events[7].kind, &events[7].text, &events[7].data),
            (complete.kind, &complete.text, &complete.data)
        );
        assert_eq!(events[7].ts, time("2025-10-13T09:00:05.500000"));
        assert!(matches!(
            events[7].to_stream_event(),
            StreamEvent::Complete {
                success: true,
                status: JobStatus::Passed,
                ..
            }
        ));

        // An unfinished job ends at the import, after its log.
        let running = events::list_after(&pool, id(RUNNING), 0, 100)
            .await
            .unwrap();
        let kinds: Vec<EventKind> = running.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Status,
                EventKind::Log,
                EventKind::Status,
                EventKind::Complete
            ]
        );
        let job = jobs::get(&pool, id(RUNNING)).await.unwrap().unwrap();
        assert_eq!(
            job.finished_at, None,
            "the prototype has no end time for it"
        );
        assert!(running[3].ts > time("2025-10-13T13:00:01"));

        // Again: nothing changes, and the summary says so.
        let rows = (
            count(&pool, "users").await,
            count(&pool, "api_keys").await,
            count(&pool, "jobs").await,
            count(&pool, "job_events").await,
        );
        let again = import(&pool, &proto.path, None).await.unwrap();
        assert!(!again.changed);
        assert_eq!(
            again.users,
            Tally {
                imported: 0,
                already_there: 2
            }
        );
        assert_eq!(
            again.keys,
            Tally {
                imported: 0,
                already_there: 2
            }
        );
        assert_eq!(
            again.jobs,
            Tally {
                imported: 0,
                already_there: 6
            }
        );
        assert_eq!((again.log_lines, again.skipped.jobs_without_owner), (0, 1));
        let after = (
            count(&pool, "users").await,
            count(&pool, "api_keys").await,
            count(&pool, "jobs").await,
            count(&pool, "job_events").await,
        );
        assert_eq!(after, rows);

        assert_eq!(
            proto.bytes(),
            before,
            "the prototype's file is never written"
        );
    }

    #[tokio::test]
    async fn a_user_with_a_known_email_is_ours_and_gets_their_keys_and_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::populated(dir.path()).await;
        let (_ours, pool) = temp_db().await;
        let ours = users::create(&pool, "Ada L.", "ADA@example.com")
            .await
            .unwrap();

        let summary = import(&pool, &proto.path, None).await.unwrap();
        assert_eq!(
            summary.users,
            Tally {
                imported: 1,
                already_there: 1
            }
        );
        assert_eq!(
            summary.matched_by_email,
            [EmailMatch {
                prototype_id: ADA.into(),
                email: "ada@example.com".into(),
                user_id: ours.id
            }]
        );
        assert!(users::get(&pool, ADA.parse().unwrap())
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            users::get(&pool, ours.id).await.unwrap().unwrap().name,
            "Ada L.",
            "ours is kept"
        );
        let (_, owner) = api_keys::find_by_secret(&pool, &SecretKey::parse(ACTIVE_KEY).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.id, ours.id);
        assert_eq!(
            jobs::get(&pool, id(PASSED)).await.unwrap().unwrap().user_id,
            ours.id
        );

        let again = import(&pool, &proto.path, None).await.unwrap();
        assert!(!again.changed);
        assert_eq!(
            again.users,
            Tally {
                imported: 0,
                already_there: 2
            }
        );
    }

    #[tokio::test]
    async fn jobs_without_an_owner_go_to_the_owner_email_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::populated(dir.path()).await;
        let (_ours, pool) = temp_db().await;

        let err = import(&pool, &proto.path, Some("nobody@example.com"))
            .await
            .unwrap_err();
        assert!(matches!(err, LegacyError::UnknownOwner(_)), "{err}");
        assert_eq!(count(&pool, "users").await, 0, "nothing left behind");
        assert_eq!(count(&pool, "jobs").await, 0);

        // A user imported by the same run may own them.
        let summary = import(&pool, &proto.path, Some("bob@example.com"))
            .await
            .unwrap();
        assert_eq!(summary.jobs_given_to_owner, 1);
        assert_eq!(summary.skipped.jobs_without_owner, 0);
        let orphan = jobs::get(&pool, id(ORPHAN)).await.unwrap().unwrap();
        assert_eq!(orphan.user_id, BOB.parse().unwrap());
        // It is the oldest job: it lists last.
        let bobs = jobs::list_for_user(&pool, orphan.user_id, 10, None)
            .await
            .unwrap();
        assert_eq!(bobs.last().unwrap().id, orphan.id);
    }

    #[tokio::test]
    async fn a_database_from_before_authentication_has_only_jobs_without_owners() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::new(dir.path(), SCHEMA_BEFORE_AUTH).await;
        proto
            .sql(
                "INSERT INTO jobs (id, status, success, start_time, end_time)
                 VALUES ('not-a-uuid', 'completed', 1, '2025-10-11T10:00:00', '2025-10-11T10:00:02');
                 INSERT INTO events (job_id, type, data, success, timestamp)
                 VALUES ('not-a-uuid', 'log', 'ok\n', NULL, '2025-10-11T10:00:01'),
                        ('not-a-uuid', 'complete', NULL, 1, '2025-10-11T10:00:02');",
            )
            .await;
        let (_ours, pool) = temp_db().await;
        let summary = import(&pool, &proto.path, None).await.unwrap();
        assert!(summary.before_authentication && !summary.changed);
        assert_eq!(summary.skipped.jobs_without_owner, 1);

        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let summary = import(&pool, &proto.path, Some("ada@example.com"))
            .await
            .unwrap();
        assert_eq!(summary.jobs.imported, 1);
        assert_eq!(summary.new_ids.len(), 1);
        let new_id = JobId(summary.new_ids[0].id);
        let job = jobs::get(&pool, new_id).await.unwrap().unwrap();
        assert_eq!(
            (job.user_id, job.status, job.log_lines),
            (ada.id, JobStatus::Passed, 1)
        );
        // The derived id is stable: a second run finds the job.
        let again = import(&pool, &proto.path, Some("ada@example.com"))
            .await
            .unwrap();
        assert_eq!(
            again.jobs,
            Tally {
                imported: 0,
                already_there: 1
            }
        );
    }

    #[tokio::test]
    async fn a_failure_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let proto = Proto::populated(dir.path()).await;
        // The last job to be written has an event time Python could not have written.
        proto
            .sql(&format!(
                "INSERT INTO events (job_id, type, data, success, timestamp)
                 VALUES ('{QUEUED}', 'log', 'x', NULL, 'yesterday')"
            ))
            .await;
        let (_ours, pool) = temp_db().await;
        let err = import(&pool, &proto.path, None).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(
                err,
                LegacyError::BadTime {
                    table: "events",
                    column: "timestamp",
                    ..
                }
            ),
            "{message}"
        );
        assert!(
            message.contains("\"yesterday\"") && message.contains("nothing was imported"),
            "{message}"
        );
        for table in ["users", "api_keys", "jobs", "job_events"] {
            assert_eq!(count(&pool, table).await, 0, "{table}");
        }
    }

    #[tokio::test]
    async fn anything_but_a_prototype_database_is_refused_with_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.db");
        let err = Prototype::open(&missing).await.unwrap_err();
        assert!(matches!(err, LegacyError::Missing { .. }));
        assert!(err.to_string().contains("no file at"), "{err}");

        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "this is not a database, just some text that is long enough to fail the header check",
        )
        .unwrap();
        let err = Prototype::open(&text).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("cannot be read as an SQLite database"),
            "{message}"
        );
        assert!(
            message.contains("expected the Python prototype's SQLite database"),
            "{message}"
        );

        // Our own database is not theirs.
        let (ours, pool) = temp_db().await;
        pool.close().await;
        let err = Prototype::open(&ours.path().join("ci.db"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("its jobs table has no columns success, start_time, end_time"),
            "{err}"
        );

        let other = tempfile::tempdir().unwrap();
        let proto = Proto::new(other.path(), SCHEMA).await;
        proto.sql("DROP TABLE events").await;
        let err = Prototype::open(&proto.path).await.unwrap_err();
        assert!(err.to_string().contains("it has no events table"), "{err}");
        proto.sql("DROP TABLE api_keys").await;
        proto
            .sql("CREATE TABLE events (id INTEGER PRIMARY KEY, job_id TEXT, type TEXT, data TEXT, success INTEGER, timestamp TEXT)")
            .await;
        let err = Prototype::open(&proto.path).await.unwrap_err();
        assert!(
            err.to_string().contains("users table but no api_keys"),
            "{err}"
        );
        assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
    }

    #[test]
    fn their_states_become_ours() {
        let cases = [
            ("completed", Some(true), JobStatus::Passed, None),
            ("completed", Some(false), JobStatus::Failed, None),
            ("completed", None, JobStatus::Failed, None),
            ("failed", Some(false), JobStatus::Error, Some(FAILED_REASON)),
            (
                "cancelled",
                None,
                JobStatus::Cancelled,
                Some(CANCELLED_REASON),
            ),
            ("queued", None, JobStatus::Lost, Some(UNFINISHED_REASON)),
            ("running", None, JobStatus::Lost, Some(UNFINISHED_REASON)),
        ];
        for (theirs, success, status, reason) in cases {
            let outcome = outcome(theirs, success);
            assert_eq!(
                (outcome.status, outcome.reason.as_deref()),
                (status, reason),
                "{theirs}"
            );
            assert_eq!(
                outcome.exit_code, None,
                "{theirs}: the prototype kept no exit code"
            );
        }
        let odd = outcome("paused", None);
        assert_eq!(odd.status, JobStatus::Lost);
        assert!(odd.reason.unwrap().contains("\"paused\""));
    }

    #[test]
    fn their_log_text_becomes_lines_without_newlines() {
        fn split(data: &str) -> Vec<&str> {
            log_lines(data).collect()
        }
        assert_eq!(split("a\n"), ["a"]);
        assert_eq!(split("a\nb\n"), ["a", "b"]);
        assert_eq!(split("a\n\nb"), ["a", "", "b"]);
        assert_eq!(split("no newline"), ["no newline"]);
        assert_eq!(split("\n"), [""]);
        assert!(split("").is_empty());
        assert_eq!(split("ünï ✓\n"), ["ünï ✓"]);
    }

    #[test]
    fn python_isoformat_times_are_read_as_utc() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        for (theirs, ours) in [
            (
                "2025-10-12T09:15:02.123456+00:00",
                "2025-10-12T09:15:02.123456Z",
            ),
            ("2025-10-12T09:15:02+00:00", "2025-10-12T09:15:02Z"),
            ("2025-10-12T11:15:02+02:00", "2025-10-12T09:15:02Z"),
            ("2025-10-12T09:15:02.123456", "2025-10-12T09:15:02.123456Z"),
            ("2025-10-12T09:15:02", "2025-10-12T09:15:02Z"),
            ("2025-10-12 09:15:02.5", "2025-10-12T09:15:02.5Z"),
        ] {
            assert_eq!(parse_time(theirs), Some(utc(ours)), "{theirs}");
        }
        for bad in ["", "yesterday", "2025-10-12", "12/10/2025 09:15"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_that_are_not_uuids_get_a_stable_derived_one() {
        let (id, derived) = uuid_for("job", ADA);
        assert_eq!((id.to_string().as_str(), derived), (ADA, false));
        let (a, derived) = uuid_for("job", "job-1");
        assert!(derived);
        assert_eq!(uuid_for("job", "job-1").0, a);
        assert_ne!(uuid_for("user", "job-1").0, a);
        assert_ne!(uuid_for("job", "job-2").0, a);
    }
}
