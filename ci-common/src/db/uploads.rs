//! Uploaded sources: the `sources` table holds each project archive once per content (SHA-256),
//! kept for a retention window after the last job that used it (so that a job can be run again,
//! `ci retry`); a job names its source. Jobs from before sources were kept have theirs in
//! `job_uploads`, deleted when they end.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{on_exec, timestamp, DbError, Exec};
use crate::keys::sha256_hex;
use crate::JobId;

/// Stores `archive` as a source (once per content; a stored one is marked used now) and
/// returns its SHA-256.
pub async fn store(
    ex: impl Into<Exec<'_>>,
    archive: &[u8],
    now: DateTime<Utc>,
) -> Result<String, DbError> {
    let sha256 = sha256_hex(archive);
    on_exec!(ex, |e| sqlx::query(
        "INSERT INTO sources (sha256, archive, size, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (sha256) DO UPDATE SET last_used_at = excluded.last_used_at",
    )
    .bind(&sha256)
    .bind(archive)
    .bind(archive.len() as i64)
    .bind(timestamp(now))
    .execute(e)
    .await
    .map(drop)?);
    Ok(sha256)
}

/// Marks the source `sha256` used now, if it is still kept; false when it has expired.
pub async fn touch(
    ex: impl Into<Exec<'_>>,
    sha256: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let updated = on_exec!(ex, |e| sqlx::query(
        "UPDATE sources SET last_used_at = $1 WHERE sha256 = $2"
    )
    .bind(timestamp(now))
    .bind(sha256)
    .execute(e)
    .await?
    .rows_affected());
    Ok(updated == 1)
}

/// The archive of a job's source, if it is still stored.
pub async fn get(ex: impl Into<Exec<'_>>, job_id: JobId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT s.archive FROM jobs j JOIN sources s ON s.sha256 = j.source_sha256 WHERE j.id = $1
         UNION ALL
         SELECT archive FROM job_uploads WHERE job_id = $1
         LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(e)
    .await?))
}

/// Deletes a job's upload from before sources were kept (at its end).
pub async fn delete(ex: impl Into<Exec<'_>>, job_id: JobId) -> Result<(), DbError> {
    on_exec!(ex, |e| sqlx::query(
        "DELETE FROM job_uploads WHERE job_id = $1"
    )
    .bind(job_id)
    .execute(e)
    .await
    .map(drop)?);
    Ok(())
}

/// Deletes the sources last used longer than `retain` ago that no queued or running job needs.
/// Returns how many.
pub async fn expire(ex: impl Into<Exec<'_>>, retain: Duration) -> Result<u64, DbError> {
    let Some(before) = chrono::Duration::from_std(retain)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
    else {
        return Ok(0);
    };
    Ok(on_exec!(ex, |e| sqlx::query(
        "DELETE FROM sources WHERE last_used_at < $1 AND NOT EXISTS (
             SELECT 1 FROM jobs j WHERE j.source_sha256 = sources.sha256
               AND j.status IN ('queued', 'running'))",
    )
    .bind(before)
    .execute(e)
    .await?
    .rows_affected()))
}

/// How many uploads are stored, sources and older uploads (to prove what is kept and that
/// nothing refused is).
pub async fn count(ex: impl Into<Exec<'_>>) -> Result<i64, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM sources) + (SELECT COUNT(*) FROM job_uploads)",
    )
    .fetch_one(e)
    .await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{on_exec, users};
    use crate::testing::{backends, Backend};

    #[tokio::test]
    async fn a_source_is_kept_once_and_expires_when_no_waiting_job_needs_it() {
        for db in backends().await {
            a_source_is_kept_once_and_expires_when_no_waiting_job_needs_it_on(&db).await;
        }
    }

    async fn a_source_is_kept_once_and_expires_when_no_waiting_job_needs_it_on(db: &Backend) {
        let long_ago = Utc::now() - chrono::Duration::days(30);
        let kept = store(db.exec(), b"zip one", long_ago).await.unwrap();
        assert_eq!(store(db.exec(), b"zip one", long_ago).await.unwrap(), kept);
        let other = store(db.exec(), b"zip two", long_ago).await.unwrap();
        assert_eq!(count(db.exec()).await.unwrap(), 2);
        // A queued job needs the first; an old-style upload of another job is counted too.
        let user = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let (job, old) = (JobId::new(), JobId::new());
        for (id, source) in [(job, Some(&kept)), (old, None)] {
            on_exec!(db.exec(), |e| sqlx::query(
                "INSERT INTO jobs (id, user_id, created_at, source_sha256) VALUES ($1, $2, $3, $4)"
            )
            .bind(id)
            .bind(user.id)
            .bind(crate::db::now())
            .bind(source)
            .execute(e)
            .await
            .map(drop)
            .unwrap());
        }
        on_exec!(db.exec(), |e| sqlx::query(
            "INSERT INTO job_uploads (job_id, archive, size, sha256, created_at)
             VALUES ($1, $2, 3, 'x', $3)"
        )
        .bind(old)
        .bind(&b"old"[..])
        .bind(crate::db::now())
        .execute(e)
        .await
        .map(drop)
        .unwrap());
        assert_eq!(count(db.exec()).await.unwrap(), 3);
        assert_eq!(
            get(db.exec(), job).await.unwrap().as_deref(),
            Some(&b"zip one"[..])
        );
        assert_eq!(
            get(db.exec(), old).await.unwrap().as_deref(),
            Some(&b"old"[..])
        );

        assert_eq!(
            expire(db.exec(), Duration::from_secs(86_400))
                .await
                .unwrap(),
            1
        );
        assert!(
            !touch(db.exec(), &other, Utc::now()).await.unwrap(),
            "expired"
        );
        assert!(touch(db.exec(), &kept, Utc::now()).await.unwrap());
        delete(db.exec(), old).await.unwrap();
        assert_eq!(get(db.exec(), old).await.unwrap(), None);
        assert_eq!(count(db.exec()).await.unwrap(), 1);
    }
}
