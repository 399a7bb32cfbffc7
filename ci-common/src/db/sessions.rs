//! The `sessions` table: browser sign-in. A user signs in once with an API key; the browser
//! then holds a random token in a cookie. Only the token's SHA-256 is stored. A session counts
//! only while it is not expired and its key and user could still be used themselves, so
//! revoking the key or deactivating the user ends its sessions too.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqliteExecutor;

use super::api_keys::ApiKey;
use super::users::User;
use super::DbError;
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
    pool: &sqlx::SqlitePool,
    key: &ApiKey,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(SessionToken, Session), DbError> {
    let token = SessionToken::generate();
    let session = Session {
        token_hash: token.hash(),
        user_id: key.user_id,
        key_id: key.id,
        created_at: now,
        expires_at: now + ttl,
    };
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, key_id, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&session.token_hash)
    .bind(session.user_id)
    .bind(session.key_id)
    .bind(session.created_at)
    .bind(session.expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((token, session))
}

/// The session with this token hash, with its key and user whatever their state (the caller
/// decides with [`ApiKey::state`] and [`User::active`]), or `None` when there is none.
pub async fn find(
    ex: impl SqliteExecutor<'_>,
    token_hash: &str,
) -> Result<Option<(Session, ApiKey, User)>, DbError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.token_hash, s.user_id, s.key_id, s.created_at, s.expires_at,
                k.id AS k_id, k.name AS k_name, k.hint AS k_hint, k.created_at AS k_created_at,
                k.last_used_at AS k_last_used_at, k.expires_at AS k_expires_at,
                k.revoked_at AS k_revoked_at,
                u.name AS u_name, u.email AS u_email, u.active AS u_active,
                u.created_at AS u_created_at
         FROM sessions s
         JOIN api_keys k ON k.id = s.key_id
         JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(ex)
    .await?;
    Ok(row.map(Row::split))
}

/// Ends a session (sign-out). Returns whether there was one.
pub async fn end(ex: impl SqliteExecutor<'_>, token_hash: &str) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() > 0)
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
    use crate::testing::TempDb;

    #[tokio::test]
    async fn a_session_is_found_by_its_token_until_it_ends() {
        let db = TempDb::new().await;
        let (user, secret) = db.user_with_key("Ada").await;
        let (key, _) = api_keys::find_by_secret(&db.pool, &secret)
            .await
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let (token, session) = create(&db.pool, &key, Duration::hours(1), now)
            .await
            .unwrap();
        assert_ne!(
            token.expose(),
            session.token_hash,
            "only the hash is stored"
        );
        let parsed = SessionToken::parse(token.expose()).unwrap();
        let (found, found_key, found_user) = find(&db.pool, &parsed.hash()).await.unwrap().unwrap();
        assert_eq!(found.user_id, user.id);
        assert_eq!(found_key.id, key.id);
        assert_eq!(found_user.name, "Ada");
        assert_eq!(found.expires_at, session.expires_at);

        api_keys::revoke(&db.pool, key.id, Utc::now())
            .await
            .unwrap();
        let (_, revoked, _) = find(&db.pool, &session.token_hash).await.unwrap().unwrap();
        assert_eq!(revoked.state(Utc::now()), KeyState::Revoked);

        assert!(end(&db.pool, &session.token_hash).await.unwrap());
        assert!(find(&db.pool, &session.token_hash).await.unwrap().is_none());
        assert!(!end(&db.pool, &session.token_hash).await.unwrap());
    }

    #[tokio::test]
    async fn expired_sessions_are_deleted_when_another_starts() {
        let db = TempDb::new().await;
        let (_, secret) = db.user_with_key("Bo").await;
        let (key, _) = api_keys::find_by_secret(&db.pool, &secret)
            .await
            .unwrap()
            .unwrap();
        let long_ago = Utc::now() - Duration::days(3);
        let (_, old) = create(&db.pool, &key, Duration::hours(1), long_ago)
            .await
            .unwrap();
        create(&db.pool, &key, Duration::hours(1), Utc::now())
            .await
            .unwrap();
        assert!(find(&db.pool, &old.token_hash).await.unwrap().is_none());
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
