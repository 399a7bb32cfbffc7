//! The `operator_policy` row: the controller publishes its [`Policy`] when it starts; the server
//! validates uploads against it.

use chrono::Utc;
use sqlx::{SqliteExecutor, SqlitePool};

use super::{lease, DbError};
use crate::policy::Policy;

/// Publishes the policy of the controller holding `epoch` (fenced: a controller that lost the
/// lease cannot overwrite its successor's policy).
pub async fn publish(pool: &SqlitePool, epoch: i64, policy: &Policy) -> Result<(), DbError> {
    let json = serde_json::to_string(policy).expect("a policy serializes");
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut tx, epoch).await?;
    sqlx::query(
        "INSERT INTO operator_policy (id, policy, epoch, updated_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET policy = ?1, epoch = ?2, updated_at = ?3",
    )
    .bind(json)
    .bind(epoch)
    .bind(Utc::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The published policy, or the default one when no controller has published yet (or the row
/// cannot be read as a policy of this version).
pub async fn current(ex: impl SqliteExecutor<'_>) -> Result<Policy, DbError> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT policy FROM operator_policy WHERE id = 1")
            .fetch_optional(ex)
            .await?;
    Ok(json
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_db;

    #[tokio::test]
    async fn published_policy_is_read_back_and_fenced() {
        let (_dir, pool) = temp_db().await;
        assert_eq!(current(&pool).await.unwrap(), Policy::default());
        let first = lease::acquire(&pool, "a").await.unwrap();
        let policy = Policy::new("img", &["other".into()], 10, 20);
        publish(&pool, first.epoch, &policy).await.unwrap();
        assert_eq!(current(&pool).await.unwrap(), policy);
        let second = lease::acquire(&pool, "b").await.unwrap();
        let err = publish(&pool, first.epoch, &Policy::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::LeaseLost(_)), "{err:?}");
        publish(&pool, second.epoch, &Policy::default())
            .await
            .unwrap();
        assert_eq!(current(&pool).await.unwrap(), Policy::default());
    }
}
