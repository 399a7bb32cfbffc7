//! The `sessions` table: browser sign-in. A user signs in once with an API key; the browser
//! then holds a random token in a cookie. Only the token's SHA-256 is stored. A session counts
//! only while it is not expired and its key and user could still be used themselves, so
//! revoking the key or deactivating the user ends its sessions too.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Acquire as _;

use super::api_keys::ApiKey;
use super::users::User;
use super::{on_exec, timestamp, DbError, Exec};
use crate::keys::hex;
use crate::{ApiKeyId, UserId};

/// Random bytes in a session token (64 hex characters in the cookie).
const TOKEN_BYTES: usize = 32;

/// The secret a browser holds. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh random token from the OS's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex(&bytes))
    }

    /// A token as the browser sent it, or `None` when it cannot be one of ours (so that a
    /// malformed cookie costs no database query).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The token itself, for the `Set-Cookie` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores: hex SHA-256 of the token.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Session {
    /// Hex SHA-256 of the token: how the server names a session without knowing its secret.
    pub token_hash: String,
    pub user_id: UserId,
    pub key_id: ApiKeyId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Starts a session for `key` (already checked by the caller) lasting `ttl`. Sessions that
/// expired are deleted on the way.
pub async fn create(
    ex: impl Into<Exec<'_>>,
    key: &ApiKey,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(SessionToken, Session), DbError> {
    let now = timestamp(now);
    let token = SessionToken::generate();
    let session = Session {
        token_hash: token.hash(),
        user_id: key.user_id,
        key_id: key.id,
        created_at: now,
        expires_at: now + ttl,
    };
    on_exec!(ex, |e| {
        let mut tx = e.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, key_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.token_hash)
        .bind(session.user_id)
        .bind(session.key_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?
    });
    Ok((token, session))
}

/// The session with this token hash, with its key and user whatever their state (the caller
/// decides with [`ApiKey::state`] and [`User::active`]), or `None` when there is none.
pub async fn find(
    ex: impl Into<Exec<'_>>,
    token_hash: &str,
) -> Result<Option<(Session, ApiKey, User)>, DbError> {
    let row: Option<Row> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT s.token_hash, s.user_id, s.key_id, s.created_at, s.expires_at,
                k.id AS k_id, k.name AS k_name, k.hint AS k_hint, k.created_at AS k_created_at,
                k.last_used_at AS k_last_used_at, k.expires_at AS k_expires_at,
                k.revoked_at AS k_revoked_at, k.scope AS k_scope,
                u.name AS u_name, u.email AS u_email, u.active AS u_active,
                u.created_at AS u_created_at
         FROM sessions s
         JOIN api_keys k ON k.id = s.key_id
         JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(e)
    .await?);
    Ok(row.map(Row::split))
}

/// Ends a session (sign-out). Returns whether there was one.
pub async fn end(ex: impl Into<Exec<'_>>, token_hash: &str) -> Result<bool, DbError> {
    let deleted = on_exec!(ex, |e| sqlx::query(
        "DELETE FROM sessions WHERE token_hash = $1"
    )
    .bind(token_hash)
    .execute(e)
    .await?
    .rows_affected());
    Ok(deleted > 0)
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    session: Session,
    k_id: ApiKeyId,
    k_name: String,
    k_hint: String,
    k_created_at: DateTime<Utc>,
    k_last_used_at: Option<DateTime<Utc>>,
    k_expires_at: Option<DateTime<Utc>>,
    k_revoked_at: Option<DateTime<Utc>>,
    k_scope: super::api_keys::KeyScope,
    u_name: String,
    u_email: String,
    u_active: bool,
    u_created_at: DateTime<Utc>,
}

impl Row {
    fn split(self) -> (Session, ApiKey, User) {
        let key = ApiKey {
            id: self.k_id,
            user_id: self.session.user_id,
            name: self.k_name,
            hint: self.k_hint,
            created_at: self.k_created_at,
            last_used_at: self.k_last_used_at,
            expires_at: self.k_expires_at,
            revoked_at: self.k_revoked_at,
            scope: self.k_scope,
        };
        let user = User {
            id: self.session.user_id,
            name: self.u_name,
            email: self.u_email,
            active: self.u_active,
            created_at: self.u_created_at,
        };
        (self.session, key, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::api_keys::{self, KeyState};
    use crate::testing::{backends, Backend};

    /// A user with one key, on `db`.
    async fn user_with_key(db: &Backend, name: &str) -> (User, crate::keys::SecretKey) {
        let email = format!("{}@example.com", name.to_lowercase());
        let user = crate::db::users::create(db.exec(), name, &email)
            .await
            .unwrap();
        let secret = crate::keys::SecretKey::generate();
        api_keys::create(db.exec(), user.id, "test", &secret, None)
            .await
            .unwrap();
        (user, secret)
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_token_until_it_ends() {
        for db in backends().await {
            a_session_is_found_by_its_token_until_it_ends_on(&db).await;
        }
    }

    async fn a_session_is_found_by_its_token_until_it_ends_on(db: &Backend) {
        let (user, secret) = user_with_key(db, "Ada").await;
        let (key, _) = api_keys::find_by_secret(db.exec(), &secret)
            .await
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let (token, session) = create(db.exec(), &key, Duration::hours(1), now)
            .await
            .unwrap();
        assert_ne!(
            token.expose(),
            session.token_hash,
            "only the hash is stored"
        );
        let parsed = SessionToken::parse(token.expose()).unwrap();
        let (found, found_key, found_user) =
            find(db.exec(), &parsed.hash()).await.unwrap().unwrap();
        assert_eq!(found.user_id, user.id);
        assert_eq!(found_key.id, key.id);
        assert_eq!(found_user.name, "Ada");
        assert_eq!(found.expires_at, session.expires_at);

        api_keys::revoke(db.exec(), key.id, Utc::now())
            .await
            .unwrap();
        let (_, revoked, _) = find(db.exec(), &session.token_hash).await.unwrap().unwrap();
        assert_eq!(revoked.state(Utc::now()), KeyState::Revoked);

        assert!(end(db.exec(), &session.token_hash).await.unwrap());
        assert!(find(db.exec(), &session.token_hash)
            .await
            .unwrap()
            .is_none());
        assert!(!end(db.exec(), &session.token_hash).await.unwrap());
    }

    #[tokio::test]
    async fn expired_sessions_are_deleted_when_another_starts() {
        for db in backends().await {
            expired_sessions_are_deleted_when_another_starts_on(&db).await;
        }
    }

    async fn expired_sessions_are_deleted_when_another_starts_on(db: &Backend) {
        let (_, secret) = user_with_key(db, "Bo").await;
        let (key, _) = api_keys::find_by_secret(db.exec(), &secret)
            .await
            .unwrap()
            .unwrap();
        let long_ago = Utc::now() - Duration::days(3);
        let (_, old) = create(db.exec(), &key, Duration::hours(1), long_ago)
            .await
            .unwrap();
        create(db.exec(), &key, Duration::hours(1), Utc::now())
            .await
            .unwrap();
        assert!(find(db.exec(), &old.token_hash).await.unwrap().is_none());
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_query() {
        assert!(SessionToken::parse("").is_none());
        assert!(SessionToken::parse(&"g".repeat(64)).is_none());
        assert!(SessionToken::parse(&"a".repeat(63)).is_none());
        let token = SessionToken::generate();
        assert_eq!(SessionToken::parse(token.expose()), Some(token.clone()));
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
