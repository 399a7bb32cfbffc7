//! The `api_keys` table. Keys are looked up by the SHA-256 of the presented secret.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::users::User;
use super::{on_exec, timestamp, DbError, Exec};
use crate::keys::SecretKey;
use crate::{ApiKeyId, UserId};

/// `last_used_at` is written at most this often per key.
pub const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The key's last four characters (`…3fQz`); empty for keys issued before hints.
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What the key may do (and the browser sessions made from it).
    pub scope: KeyScope,
}

/// What a key may do: `submit` (the default) everything its user may; `read` list, follow and
/// download, but not submit, cancel or change anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum KeyScope {
    Read,
    #[default]
    Submit,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Submit => "submit",
        }
    }
}

impl std::str::FromStr for KeyScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(KeyScope::Read),
            "submit" => Ok(KeyScope::Submit),
            other => Err(format!(
                "unknown scope {other:?}: `read` (list, follow, download) or `submit` (also \
                 submit and cancel)"
            )),
        }
    }
}

/// Whether a key can be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Revoked,
    Expired,
}

impl KeyState {
    pub fn label(self) -> &'static str {
        match self {
            KeyState::Active => "Active",
            KeyState::Revoked => "Revoked",
            KeyState::Expired => "Expired",
        }
    }
}

impl ApiKey {
    /// How a key is named in messages: its name and hint, e.g. `"laptop" …3fQz`.
    pub fn label(&self) -> String {
        if self.hint.is_empty() {
            format!("{:?}", self.name)
        } else {
            format!("{:?} {}", self.name, self.hint)
        }
    }

    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }
}

const COLUMNS: &str =
    "id, user_id, name, hint, created_at, last_used_at, expires_at, revoked_at, scope";

/// Creates a key of scope `submit` (see [`create_scoped`]).
pub async fn create(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    name: &str,
    secret: &SecretKey,
    expires_at: Option<DateTime<Utc>>,
) -> Result<ApiKey, DbError> {
    create_scoped(ex, user_id, name, secret, expires_at, KeyScope::Submit).await
}

/// Creates a key of `user_id` with the secret's hash (never the secret), its hint and `scope`.
pub async fn create_scoped(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    name: &str,
    secret: &SecretKey,
    expires_at: Option<DateTime<Utc>>,
    scope: KeyScope,
) -> Result<ApiKey, DbError> {
    let key = ApiKey {
        scope,
        id: ApiKeyId::new(),
        user_id,
        name: name.to_owned(),
        hint: secret.hint(),
        created_at: super::now(),
        last_used_at: None,
        expires_at: expires_at.map(timestamp),
        revoked_at: None,
    };
    on_exec!(ex, |e| {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, hint, key_hash, created_at, expires_at,
                                   scope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(key.id)
        .bind(key.user_id)
        .bind(&key.name)
        .bind(&key.hint)
        .bind(secret.hash())
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.scope)
        .execute(e)
        .await
        .map(drop)?
    });
    Ok(key)
}

/// All keys, or one user's, oldest first.
pub async fn list(
    ex: impl Into<Exec<'_>>,
    user_id: Option<UserId>,
) -> Result<Vec<ApiKey>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at, id"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(user_id)
        .fetch_all(e)
        .await?))
}

pub async fn get(ex: impl Into<Exec<'_>>, id: ApiKeyId) -> Result<Option<ApiKey>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(e)
        .await?))
}

/// Revokes a key (keeping the first revocation time); `None` if there is no such key.
pub async fn revoke(
    ex: impl Into<Exec<'_>>,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>, DbError> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {COLUMNS}"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(timestamp(now))
        .bind(id)
        .fetch_optional(e)
        .await?))
}

/// The key with this secret and its owner, whatever their state (the caller decides what a
/// revoked key or an inactive user means).
pub async fn find_by_secret(
    ex: impl Into<Exec<'_>>,
    secret: &SecretKey,
) -> Result<Option<(ApiKey, User)>, DbError> {
    let row: Option<KeyAndUser> = on_exec!(ex, |e| {
        sqlx::query_as(
            "SELECT k.id, k.user_id, k.name, k.hint, k.created_at, k.last_used_at, k.expires_at,
                    k.revoked_at, k.scope, u.name AS user_name, u.email, u.active,
                    u.created_at AS user_created_at
             FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = $1",
        )
        .bind(secret.hash())
        .fetch_optional(e)
        .await?
    });
    Ok(row.map(KeyAndUser::split))
}

/// Records a use of the key, at most once per [`LAST_USED_RESOLUTION`].
pub async fn touch(
    ex: impl Into<Exec<'_>>,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let now = timestamp(now);
    on_exec!(ex, |e| {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - LAST_USED_RESOLUTION)
        .execute(e)
        .await
        .map(drop)?
    });
    Ok(())
}

#[derive(sqlx::FromRow)]
struct KeyAndUser {
    #[sqlx(flatten)]
    key: ApiKey,
    user_name: String,
    email: String,
    active: bool,
    user_created_at: DateTime<Utc>,
}

impl KeyAndUser {
    fn split(self) -> (ApiKey, User) {
        let user = User {
            id: self.key.user_id,
            name: self.user_name,
            email: self.email,
            active: self.active,
            created_at: self.user_created_at,
        };
        (self.key, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::on_exec;
    use crate::db::users;
    use crate::testing::{backends, Backend};

    #[tokio::test]
    async fn keys_are_found_by_secret_and_revocation_sticks() {
        for db in backends().await {
            keys_are_found_by_secret_and_revocation_sticks_on(&db).await;
        }
    }

    async fn keys_are_found_by_secret_and_revocation_sticks_on(db: &Backend) {
        let user = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let secret = SecretKey::generate();
        let key = create(db.exec(), user.id, "laptop", &secret, None)
            .await
            .unwrap();
        let stored: String = on_exec!(db.exec(), |e| sqlx::query_scalar(
            "SELECT key_hash FROM api_keys"
        )
        .fetch_one(e)
        .await
        .unwrap());
        assert_eq!(stored, secret.hash());
        assert!(!stored.contains(secret.expose()));

        let (found, owner) = find_by_secret(db.exec(), &secret).await.unwrap().unwrap();
        assert_eq!(found.id, key.id);
        assert_eq!(owner, user);
        assert!(find_by_secret(db.exec(), &SecretKey::generate())
            .await
            .unwrap()
            .is_none());

        let now = Utc::now();
        let revoked = revoke(db.exec(), key.id, now).await.unwrap().unwrap();
        assert_eq!(revoked.state(now), KeyState::Revoked);
        let again = revoke(db.exec(), key.id, now + Duration::seconds(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_at, revoked.revoked_at);
        assert!(revoke(db.exec(), ApiKeyId::new(), now)
            .await
            .unwrap()
            .is_none());
        assert_eq!(list(db.exec(), Some(user.id)).await.unwrap().len(), 1);
        assert!(list(db.exec(), Some(UserId::new()))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn last_used_is_written_at_most_once_a_minute() {
        for db in backends().await {
            last_used_is_written_at_most_once_a_minute_on(&db).await;
        }
    }

    async fn last_used_is_written_at_most_once_a_minute_on(db: &Backend) {
        let user = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let key = create(db.exec(), user.id, "k", &SecretKey::generate(), None)
            .await
            .unwrap();
        let t0 = crate::db::now();
        touch(db.exec(), key.id, t0).await.unwrap();
        touch(db.exec(), key.id, t0 + Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(
            get(db.exec(), key.id).await.unwrap().unwrap().last_used_at,
            Some(t0)
        );
        let t2 = t0 + Duration::seconds(61);
        touch(db.exec(), key.id, t2).await.unwrap();
        assert_eq!(
            get(db.exec(), key.id).await.unwrap().unwrap().last_used_at,
            Some(t2)
        );
    }

    #[test]
    fn expiry() {
        let now = Utc::now();
        let key = ApiKey {
            id: ApiKeyId::new(),
            user_id: UserId::new(),
            name: "k".into(),
            hint: "…wxyz".into(),
            created_at: now,
            last_used_at: None,
            expires_at: Some(now),
            revoked_at: None,
            scope: KeyScope::Submit,
        };
        assert_eq!(key.state(now), KeyState::Expired);
        assert_eq!(key.state(now - Duration::seconds(1)), KeyState::Active);
    }
}
