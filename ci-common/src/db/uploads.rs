//! Uploaded sources: the `sources` table holds each project archive once per content (SHA-256),
//! kept for a retention window after the last job that used it (so that a job can be run again,
//! `ci retry`); a job names its source. Jobs from before sources were kept have theirs in
//! `job_uploads`, deleted when they end.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::DbError;
use crate::keys::sha256_hex;
use crate::JobId;

/// Stores `archive` as a source (once per content; a stored one is marked used now) and
/// returns its SHA-256.
pub async fn store(
    conn: &mut SqliteConnection,
    archive: &[u8],
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    let sha256 = sha256_hex(archive);
    sqlx::query(
        "INSERT INTO sources (sha256, archive, size, created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (sha256) DO UPDATE SET last_used_at = excluded.last_used_at",
    )
    .bind(&sha256)
    .bind(archive)
    .bind(archive.len() as i64)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(sha256)
}

/// Marks the source `sha256` used now, if it is still kept; false when it has expired.
pub async fn touch(
    conn: &mut SqliteConnection,
    sha256: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE sources SET last_used_at = ? WHERE sha256 = ?")
        .bind(now)
        .bind(sha256)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The archive of a job's source, if it is still stored.
pub async fn get(ex: impl SqliteExecutor<'_>, job_id: JobId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT s.archive FROM jobs j JOIN sources s ON s.sha256 = j.source_sha256 WHERE j.id = ?1
         UNION ALL
         SELECT archive FROM job_uploads WHERE job_id = ?1
         LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(ex)
    .await?)
}

/// Deletes a job's upload from before sources were kept (at its end).
pub async fn delete(ex: impl SqliteExecutor<'_>, job_id: JobId) -> Result<(), DbError> {
    sqlx::query("DELETE FROM job_uploads WHERE job_id = ?")
        .bind(job_id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Deletes the sources last used longer than `retain` ago that no queued or running job needs.
/// Returns how many.
pub async fn expire(pool: &SqlitePool, retain: Duration) -> Result<u64, DbError> {
    let Some(before) = chrono::Duration::from_std(retain)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
    else {
        return Ok(0);
    };
    let done = sqlx::query(
        "DELETE FROM sources WHERE last_used_at < ? AND NOT EXISTS (
             SELECT 1 FROM jobs j WHERE j.source_sha256 = sources.sha256
               AND j.status IN ('queued', 'running'))",
    )
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// How many uploads are stored, sources and older uploads (to prove what is kept and that
/// nothing refused is).
pub async fn count(ex: impl SqliteExecutor<'_>) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM sources) + (SELECT COUNT(*) FROM job_uploads)",
    )
    .fetch_one(ex)
    .await?)
}
