//! The `triggers` table: a user's trigger tokens, each bound to a task and a git source. A
//! token starts a job as its owner without an API key (`POST /api/v1/trigger/{token}`); a token
//! of kind `push` is a push webhook's address (`POST /api/v1/hooks/{token}`) and has a secret
//! of its own that signs the webhook's body. Tokens are stored as their SHA-256 only; both are
//! shown once, when created.

use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{on_exec, timestamp, DbError, Exec};
use crate::keys::sha256_hex;
use crate::UserId;

/// What a trigger token starts jobs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum TriggerKind {
    /// A plain request with the token (another system's build step, a deploy tool).
    Run,
    /// A GitHub- or Gitea-style push webhook, signed with the trigger's secret.
    Push,
}

/// A trigger token as stored (never the token itself).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trigger {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: UserId,
    pub kind: TriggerKind,
    /// The task its jobs run.
    pub task: String,
    pub git_url: String,
    /// The ref its jobs fetch (a run may name another; a push fetches the pushed commit);
    /// absent: the remote's default branch.
    pub git_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The push webhook's HMAC secret (kind `push`). Never serialized: shown once, at creation.
    #[serde(skip)]
    pub secret: Option<String>,
}

/// What a new trigger is bound to.
#[derive(Clone, Copy, Debug)]
pub struct NewTrigger<'a> {
    pub user_id: UserId,
    pub kind: TriggerKind,
    pub task: &'a str,
    pub git_url: &'a str,
    pub git_ref: Option<&'a str>,
}

/// A trigger just made, with its token (and secret) in clear: the only time they are known.
#[derive(Clone, Debug)]
pub struct Created {
    pub trigger: Trigger,
    pub token: String,
}

/// Prefix of trigger tokens (`cit_` and 40 letters and digits).
pub const TOKEN_PREFIX: &str = "cit_";
/// Prefix of push webhook secrets.
pub const SECRET_PREFIX: &str = "whsec_";

fn random_text(prefix: &str) -> String {
    let body: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

const COLUMNS: &str =
    "id, user_id, kind, task, git_url, git_ref, created_at, last_used_at, revoked_at, secret";

/// Creates a trigger with a new token (and, for `push`, a new secret).
pub async fn create(ex: impl Into<Exec<'_>>, new: &NewTrigger<'_>) -> Result<Created, DbError> {
    let token = random_text(TOKEN_PREFIX);
    let trigger = Trigger {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: new.user_id,
        kind: new.kind,
        task: new.task.to_owned(),
        git_url: new.git_url.to_owned(),
        git_ref: new.git_ref.map(str::to_owned),
        created_at: super::now(),
        last_used_at: None,
        revoked_at: None,
        secret: (new.kind == TriggerKind::Push).then(|| random_text(SECRET_PREFIX)),
    };
    on_exec!(ex, |e| sqlx::query(
        "INSERT INTO triggers (id, user_id, kind, token_sha256, secret, task, git_url, git_ref,
                               created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&trigger.id)
    .bind(trigger.user_id)
    .bind(trigger.kind)
    .bind(sha256_hex(token.as_bytes()))
    .bind(&trigger.secret)
    .bind(&trigger.task)
    .bind(&trigger.git_url)
    .bind(&trigger.git_ref)
    .bind(trigger.created_at)
    .execute(e)
    .await
    .map(drop)?);
    Ok(Created { trigger, token })
}

/// A user's triggers, oldest first (revoked ones included).
pub async fn list(ex: impl Into<Exec<'_>>, user_id: UserId) -> Result<Vec<Trigger>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM triggers WHERE user_id = $1 ORDER BY created_at, id");
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(user_id)
        .fetch_all(e)
        .await?))
}

/// Revokes one of the user's triggers (keeping the first revocation time); `None` if the user
/// has no such trigger.
pub async fn revoke(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    id: &str,
) -> Result<Option<Trigger>, DbError> {
    let sql = format!(
        "UPDATE triggers SET revoked_at = COALESCE(revoked_at, $1)
         WHERE id = $2 AND user_id = $3 RETURNING {COLUMNS}"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(timestamp(super::now()))
        .bind(id)
        .bind(user_id)
        .fetch_optional(e)
        .await?))
}

/// The active trigger with this token whose owner is active, marked used now; `None` for an
/// unknown or revoked token or an inactive owner.
pub async fn use_token(ex: impl Into<Exec<'_>>, token: &str) -> Result<Option<Trigger>, DbError> {
    let sql = format!(
        "UPDATE triggers SET last_used_at = $1
         WHERE token_sha256 = $2 AND revoked_at IS NULL
           AND user_id IN (SELECT id FROM users WHERE active)
         RETURNING {COLUMNS}"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(timestamp(super::now()))
        .bind(sha256_hex(token.as_bytes()))
        .fetch_optional(e)
        .await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users;
    use crate::testing::backends;

    #[tokio::test]
    async fn tokens_start_until_revoked_and_only_their_owner_revokes_on_every_backend() {
        for db in backends().await {
            let ada = users::create(db.exec(), "Ada", "ada@example.com")
                .await
                .unwrap();
            let bob = users::create(db.exec(), "Bob", "bob@example.com")
                .await
                .unwrap();
            let new = NewTrigger {
                user_id: ada.id,
                kind: TriggerKind::Push,
                task: "test",
                git_url: "https://example.com/r.git",
                git_ref: Some("main"),
            };
            let created = create(db.exec(), &new).await.unwrap();
            assert!(created.token.starts_with(TOKEN_PREFIX), "{db:?}");
            let secret = created.trigger.secret.clone().unwrap();
            assert!(secret.starts_with(SECRET_PREFIX));
            let used = use_token(db.exec(), &created.token).await.unwrap().unwrap();
            assert_eq!(used.id, created.trigger.id);
            assert_eq!(used.secret.as_deref(), Some(secret.as_str()));
            assert!(used.last_used_at.is_some());
            assert!(use_token(db.exec(), "cit_nope").await.unwrap().is_none());
            assert!(revoke(db.exec(), bob.id, &used.id).await.unwrap().is_none());
            assert!(use_token(db.exec(), &created.token)
                .await
                .unwrap()
                .is_some());
            let revoked = revoke(db.exec(), ada.id, &used.id).await.unwrap().unwrap();
            assert!(revoked.revoked_at.is_some());
            assert!(use_token(db.exec(), &created.token)
                .await
                .unwrap()
                .is_none());
            assert_eq!(list(db.exec(), ada.id).await.unwrap().len(), 1);
            assert!(list(db.exec(), bob.id).await.unwrap().is_empty());
            let json = serde_json::to_string(&revoked).unwrap();
            assert!(!json.contains(&secret), "the secret is never serialized");
        }
    }
}
