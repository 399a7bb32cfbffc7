//! The `job_uploads` table: each job's project archive, stored until the job ends.

use sqlx::SqliteExecutor;

use super::DbError;
use crate::JobId;

/// The archive uploaded for a job, if it is still stored.
pub async fn get(ex: impl SqliteExecutor<'_>, job_id: JobId) -> Result<Option<Vec<u8>>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT archive FROM job_uploads WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(ex)
            .await?,
    )
}

pub async fn delete(ex: impl SqliteExecutor<'_>, job_id: JobId) -> Result<(), DbError> {
    sqlx::query("DELETE FROM job_uploads WHERE job_id = ?")
        .bind(job_id)
        .execute(ex)
        .await?;
    Ok(())
}

/// How many uploads are stored (to prove none are left behind).
pub async fn count(ex: impl SqliteExecutor<'_>) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM job_uploads")
        .fetch_one(ex)
        .await?)
}
