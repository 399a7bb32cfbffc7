//! The `operator_policy` row: the controller publishes its [`Policy`] when it starts; the server
//! validates uploads against it.

use super::{lease, on_exec, BeginWrite as _, DbError, Exec};
use crate::policy::Policy;

/// Publishes the policy of the controller holding `epoch` (fenced: a controller that lost the
/// lease cannot overwrite its successor's policy).
pub async fn publish(ex: impl Into<Exec<'_>>, epoch: i64, policy: &Policy) -> Result<(), DbError> {
    let json = serde_json::to_string(policy).expect("a policy serializes");
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        sqlx::query(
            "INSERT INTO operator_policy (id, policy, epoch, updated_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET policy = $1, epoch = $2, updated_at = $3",
        )
        .bind(&json)
        .bind(epoch)
        .bind(super::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?
    });
    Ok(())
}

/// The published policy, or the default one when no controller has published yet (or the row
/// cannot be read as a policy of this version).
pub async fn current(ex: impl Into<Exec<'_>>) -> Result<Policy, DbError> {
    let json: Option<String> = on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT policy FROM operator_policy WHERE id = 1"
    )
    .fetch_optional(e)
    .await?);
    Ok(json
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{backends, Backend};

    #[tokio::test]
    async fn published_policy_is_read_back_and_fenced() {
        for db in backends().await {
            published_policy_is_read_back_and_fenced_on(&db).await;
        }
    }

    async fn published_policy_is_read_back_and_fenced_on(db: &Backend) {
        assert_eq!(current(db.exec()).await.unwrap(), Policy::default());
        let first = lease::acquire(db.exec(), "a").await.unwrap();
        let policy = Policy::new("img", &["other".into()], 10, 20);
        publish(db.exec(), first.epoch, &policy).await.unwrap();
        assert_eq!(current(db.exec()).await.unwrap(), policy);
        let second = lease::acquire(db.exec(), "b").await.unwrap();
        let err = publish(db.exec(), first.epoch, &Policy::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::LeaseLost(_)), "{err:?}");
        publish(db.exec(), second.epoch, &Policy::default())
            .await
            .unwrap();
        assert_eq!(current(db.exec()).await.unwrap(), Policy::default());
    }
}
