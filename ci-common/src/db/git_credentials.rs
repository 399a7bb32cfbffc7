//! The `git_credentials` table: a user's credentials for private git remotes, one per host,
//! the password sealed with the operator's key ([`crate::secrets`]). Reading one back needs that
//! key; listing never returns the secret.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{on_exec, DbError, Exec};
use crate::secrets::{SecretsError, SecretsKey};
use crate::UserId;

/// A stored credential, as listed (no secret).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitCredential {
    /// The remote's host name (or address), lower-case, as in its URLs.
    pub host: String,
    pub username: String,
    pub updated_at: DateTime<Utc>,
}

/// What a sealed credential is bound to: its user and host.
fn owner(user_id: UserId, host: &str) -> String {
    format!("git-credential {user_id} {host}")
}

/// Stores (or replaces) the user's credential for `host`, sealing `password` with `key`.
pub async fn set(
    ex: impl Into<Exec<'_>>,
    key: &SecretsKey,
    user_id: UserId,
    host: &str,
    username: &str,
    password: &str,
) -> Result<GitCredential, DbError> {
    let host = host.to_ascii_lowercase();
    let sealed = key.seal(password, &owner(user_id, &host));
    let now = super::now();
    on_exec!(ex, |e| sqlx::query(
        "INSERT INTO git_credentials (user_id, host, username, secret, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, host) DO UPDATE
         SET username = excluded.username, secret = excluded.secret,
             updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(&host)
    .bind(username)
    .bind(&sealed)
    .bind(now)
    .execute(e)
    .await
    .map(drop)?);
    Ok(GitCredential {
        host,
        username: username.to_owned(),
        updated_at: now,
    })
}

/// The user's credentials, by host (without their secrets).
pub async fn list(ex: impl Into<Exec<'_>>, user_id: UserId) -> Result<Vec<GitCredential>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT host, username, updated_at FROM git_credentials WHERE user_id = $1 ORDER BY host"
    )
    .bind(user_id)
    .fetch_all(e)
    .await?))
}

/// Removes the user's credential for `host`; false if there was none.
pub async fn remove(ex: impl Into<Exec<'_>>, user_id: UserId, host: &str) -> Result<bool, DbError> {
    let done = on_exec!(ex, |e| sqlx::query(
        "DELETE FROM git_credentials WHERE user_id = $1 AND host = $2"
    )
    .bind(user_id)
    .bind(host.to_ascii_lowercase())
    .execute(e)
    .await
    .map(|r| r.rows_affected())?);
    Ok(done > 0)
}

/// The user's user name and password for `host`, opened with `key`; `None` when none is stored.
///
/// # Errors
///
/// [`DbError`] in the outer result; [`SecretsError`] in the inner one when the secret does not
/// open (another key).
pub async fn get(
    ex: impl Into<Exec<'_>>,
    key: &SecretsKey,
    user_id: UserId,
    host: &str,
) -> Result<Option<Result<(String, String), SecretsError>>, DbError> {
    let host = host.to_ascii_lowercase();
    let row: Option<(String, String)> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT username, secret FROM git_credentials WHERE user_id = $1 AND host = $2"
    )
    .bind(user_id)
    .bind(&host)
    .fetch_optional(e)
    .await?);
    Ok(row.map(|(username, sealed)| {
        key.open(&sealed, &owner(user_id, &host))
            .map(|password| (username, password))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users;
    use crate::testing::backends;

    #[tokio::test]
    async fn credentials_are_sealed_per_user_and_host_on_every_backend() {
        let key = SecretsKey::from_hex(&"11".repeat(32)).unwrap();
        let other_key = SecretsKey::from_hex(&"22".repeat(32)).unwrap();
        for db in backends().await {
            let ada = users::create(db.exec(), "Ada", "ada@example.com")
                .await
                .unwrap();
            let bob = users::create(db.exec(), "Bob", "bob@example.com")
                .await
                .unwrap();
            set(db.exec(), &key, ada.id, "Git.Example.com", "ada", "tok1")
                .await
                .unwrap();
            set(db.exec(), &key, ada.id, "git.example.com", "ada2", "tok2")
                .await
                .unwrap();
            let got = get(db.exec(), &key, ada.id, "git.example.com")
                .await
                .unwrap();
            assert_eq!(
                got.unwrap().unwrap(),
                ("ada2".to_owned(), "tok2".to_owned())
            );
            assert!(get(db.exec(), &key, bob.id, "git.example.com")
                .await
                .unwrap()
                .is_none());
            assert!(get(db.exec(), &other_key, ada.id, "git.example.com")
                .await
                .unwrap()
                .unwrap()
                .is_err());
            let listed = list(db.exec(), ada.id).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert!(!serde_json::to_string(&listed).unwrap().contains("tok2"));
            let stored: String = crate::db::on_exec!(db.exec(), |e| sqlx::query_scalar(
                "SELECT secret FROM git_credentials"
            )
            .fetch_one(e)
            .await
            .unwrap());
            assert!(!stored.contains("tok2"), "sealed at rest");
            assert!(remove(db.exec(), ada.id, "git.example.com").await.unwrap());
            assert!(!remove(db.exec(), ada.id, "git.example.com").await.unwrap());
        }
    }
}
