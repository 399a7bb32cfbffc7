//! The `audit_log` table: who did what, from where, to what, and how it ended. Every
//! administrative and user action writes one row, in the transaction of the action itself
//! (begin a [`Db::begin_write`](super::Db::begin_write) transaction, run the action on it,
//! [`record`] on it, commit), so that an action is never done without its row nor recorded
//! without having been done. The table is append-only (the schema refuses updates and deletes)
//! and job retention leaves it alone.
//!
//! A row never holds a secret: no API keys, trigger tokens, session tokens, passwords,
//! credential values or webhook secrets; URLs are recorded without what may carry one
//! ([`url_without_secrets`], [`url_origin`]).
//!
//! ```text
//! id  at                    actor        source     action       target          outcome  detail
//! 7   2026-12-01T10:00:00Z  admin:root   local      user.create  user ada@ex.com ok       {"user_id": "…", "name": "Ada"}
//! 8   2026-12-01T10:01:02Z  Ada          10.0.0.7   job.submit   job 5f0c…       ok       {"task": "test", "source": "upload", "bytes": 1234}
//! 9   2026-12-01T10:02:00Z  -            10.0.0.9   session.sign_in  key         denied   {"code": "unknown_api_key"}
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{on_exec, stored_text, DbError, Exec};
use crate::UserId;

/// The `source` of actions taken with `ci-admin` on the database's machine.
pub const LOCAL: &str = "local";

/// The `actor` of an action whose caller is not known (a sign-in with a key nobody has).
pub const UNKNOWN_ACTOR: &str = "-";

/// Defines [`Action`] from `Variant = "dotted.name"` pairs: the one list of what is recorded.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What an audit row records. Stored as its dotted name ([`Action::as_str`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in the order of this list.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The dotted name the row stores: `user.create`, `job.submit`, ...
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    /// `ci-admin user create`. Target `user <email>`.
    UserCreate = "user.create",
    /// `ci-admin user activate`.
    UserActivate = "user.activate",
    /// `ci-admin user deactivate`.
    UserDeactivate = "user.deactivate",
    /// `ci-admin key create`. Target `key "<name>" …<hint>`.
    KeyCreate = "key.create",
    /// `ci-admin key revoke`.
    KeyRevoke = "key.revoke",
    /// `ci-admin team create`. Target `team <name>`.
    TeamCreate = "team.create",
    /// `ci-admin team delete`.
    TeamDelete = "team.delete",
    /// `ci-admin team add-member`.
    TeamAddMember = "team.add_member",
    /// `ci-admin team remove-member`.
    TeamRemoveMember = "team.remove_member",
    /// A job queued by its user: an upload (`/api/v1/jobs`, `/submit*`) or a job from git.
    /// Target `job <id>`.
    JobSubmit = "job.submit",
    /// `POST /api/v1/jobs/{id}/cancel`.
    JobCancel = "job.cancel",
    /// `POST /api/v1/jobs/{id}/retry`. Target the new job; `detail.retry_of` the old one.
    JobRetry = "job.retry",
    /// `ci-admin prune`: jobs deleted by hand. Written after the prune, whose small batches are
    /// transactions of their own.
    JobPrune = "job.prune",
    /// `POST /api/v1/triggers`. Target `trigger <id>`.
    TriggerCreate = "trigger.create",
    /// `DELETE /api/v1/triggers/{id}`.
    TriggerRevoke = "trigger.revoke",
    /// A job started with a trigger token (`/api/v1/trigger/{token}`, `/api/v1/hooks/{token}`),
    /// as the trigger's owner; `denied` for a push whose signature does not match.
    TriggerRun = "trigger.run",
    /// `POST /api/v1/webhooks`. Target `webhook <id>`.
    WebhookAdd = "webhook.add",
    /// `DELETE /api/v1/webhooks/{id}`.
    WebhookRemove = "webhook.remove",
    /// `PUT /api/v1/git-credentials/{host}`. Target `git-credential <host>`.
    GitCredentialSet = "git_credential.set",
    /// `DELETE /api/v1/git-credentials/{host}`.
    GitCredentialRemove = "git_credential.remove",
    /// `PUT /api/v1/secrets/{name}`. Target `secret <NAME>` (a team's: `secret <NAME> of team
    /// <team>`); never the value.
    SecretSet = "secret.set",
    /// `DELETE /api/v1/secrets/{name}`.
    SecretRemove = "secret.remove",
    /// `POST /api/v1/session`; `denied` for a key that cannot be used (a failed request with a
    /// bearer key elsewhere is not recorded).
    SessionSignIn = "session.sign_in",
    /// `DELETE /api/v1/session` of a browser session.
    SessionSignOut = "session.sign_out",
    /// `ci-admin cache prune`.
    CachePrune = "cache.prune",
    /// `ci-admin import-legacy`. Target the prototype's database file.
    LegacyImport = "legacy.import",
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}: one of {}", known.join(", "))
            })
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How an action ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    #[default]
    Ok,
    /// Refused for who asked: a sign-in with a key that cannot be used, a wrong signature.
    Denied,
    /// Tried and not done (an administrator's command that failed on the way).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// Who acted, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user's name; `admin:<OS user>` for `ci-admin`; [`UNKNOWN_ACTOR`] when not known.
    pub name: String,
    /// The user, when the actor is one.
    pub user_id: Option<UserId>,
    /// The address the request came from, or [`LOCAL`].
    pub source: String,
}

impl Actor {
    /// A user, acting from `source`.
    pub fn user(name: &str, user_id: UserId, source: &str) -> Self {
        Self {
            name: name.to_owned(),
            user_id: Some(user_id),
            source: source.to_owned(),
        }
    }

    /// `ci-admin` run by the operating system's user `os_user`, on the machine ([`LOCAL`]).
    pub fn admin(os_user: &str) -> Self {
        Self {
            name: format!("admin:{os_user}"),
            user_id: None,
            source: LOCAL.to_owned(),
        }
    }

    /// Someone not known, from `source`.
    pub fn unknown(source: &str) -> Self {
        Self {
            name: UNKNOWN_ACTOR.to_owned(),
            user_id: None,
            source: source.to_owned(),
        }
    }

    /// An entry of this actor: `action` on `target`, [`Outcome::Ok`], no detail.
    pub fn entry(&self, action: Action, target: impl Into<String>) -> AuditEntry {
        AuditEntry {
            actor: self.clone(),
            action,
            target: target.into(),
            outcome: Outcome::Ok,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
}

/// A row to write: [`Actor::entry`], then [`AuditEntry::detail`] and [`AuditEntry::outcome`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: Action,
    /// What the action was on: `user ada@example.com`, `job <id>`, `key "laptop" …3fQz`.
    pub target: String,
    pub outcome: Outcome,
    /// A JSON object with what else is worth knowing (ids, counts, names). Never a secret.
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// The entry with `detail` (a JSON object).
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The entry with `outcome`.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// A row as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Increasing in the order rows were written.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_user_id: Option<UserId>,
    pub source: String,
    /// The dotted name of the [`Action`] (as text: rows of a newer version's actions read too).
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    actor_user_id: Option<UserId>,
    source: String,
    action: String,
    target: String,
    outcome: Outcome,
    detail: String,
}

impl From<Row> for AuditRecord {
    fn from(row: Row) -> Self {
        Self {
            id: row.id,
            at: row.at,
            actor: row.actor,
            actor_user_id: row.actor_user_id,
            source: row.source,
            action: row.action,
            target: row.target,
            outcome: row.outcome,
            // Written by `record` as JSON; anything else is shown as the text it is.
            detail: serde_json::from_str(&row.detail)
                .unwrap_or(serde_json::Value::String(row.detail)),
        }
    }
}

/// Writes `entry` (at the current time) and returns its id. Run it on the transaction of the
/// action it records.
pub async fn record(ex: impl Into<Exec<'_>>, entry: &AuditEntry) -> Result<i64, DbError> {
    let ex = ex.into();
    let postgres = ex.is_postgres();
    let detail = match &entry.detail {
        serde_json::Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    let text = |s: &str| stored_text(postgres, s).into_owned();
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "INSERT INTO audit_log (at, actor, actor_user_id, source, action, target, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id",
    )
    .bind(super::now())
    .bind(text(&entry.actor.name))
    .bind(entry.actor.user_id)
    .bind(text(&entry.actor.source))
    .bind(entry.action.as_str())
    .bind(text(&entry.target))
    .bind(entry.outcome)
    .bind(text(&detail))
    .fetch_one(e)
    .await?))
}

/// Which rows [`list`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    /// Only rows written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows of this actor: its name as stored (`Ada`, `admin:root`) or its user's id.
    pub actor: Option<String>,
    /// Only rows of this action (`job.cancel`), or of every action under a prefix (`job`).
    pub action: Option<String>,
    /// Only the newest this many.
    pub limit: Option<i64>,
}

/// The rows `filter` selects, oldest first (with a limit: the newest that many, oldest first).
pub async fn list(
    ex: impl Into<Exec<'_>>,
    filter: &AuditFilter,
) -> Result<Vec<AuditRecord>, DbError> {
    let rows: Vec<Row> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT id, at, actor, actor_user_id, source, action, target, outcome, detail
         FROM audit_log
         WHERE ($1 IS NULL OR at >= $1)
           AND ($2 IS NULL OR actor = $2 OR actor_user_id = $2)
           AND ($3 IS NULL OR action = $3 OR substr(action, 1, length($3) + 1) = $3 || '.')
         ORDER BY id DESC
         LIMIT $4",
    )
    .bind(filter.since.map(super::timestamp))
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.limit.unwrap_or(i64::MAX).max(0))
    .fetch_all(e)
    .await?);
    Ok(rows.into_iter().rev().map(AuditRecord::from).collect())
}

/// `url` as an audit row may show it: without user name and password, query and fragment
/// (where tokens are put); what cannot be read as a URL is not shown.
pub fn url_without_secrets(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The scheme, host and port of `url` alone (a webhook receiver's path may be its secret, as a
/// chat service's incoming webhooks are).
pub fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.host_str() {
            Some(host) => match parsed.port() {
                Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
                None => format!("{}://{host}", parsed.scheme()),
            },
            None => format!("{}:", parsed.scheme()),
        },
        Err(_) => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{jobs, retention, users};
    use crate::testing::{backends, Backend};

    #[test]
    fn every_action_has_one_dotted_name_that_reads_back() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            let name = action.as_str();
            assert!(seen.insert(name), "{name} twice");
            let (thing, verb) = name.split_once('.').expect("dotted");
            assert!(!thing.is_empty() && !verb.is_empty() && !verb.contains('.'));
            assert_eq!(name.parse::<Action>(), Ok(*action));
        }
        assert!("job.explode"
            .parse::<Action>()
            .unwrap_err()
            .contains("job.submit"));
    }

    #[test]
    fn urls_lose_what_may_carry_a_secret() {
        assert_eq!(
            url_without_secrets("https://ada:glpat-123@git.example.com/app.git?token=x#y"),
            "https://git.example.com/app.git"
        );
        assert_eq!(
            url_origin("https://hooks.example.com:8443/services/T0/B0/s3cret?x=1"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(url_origin("http://127.0.0.1/hook"), "http://127.0.0.1");
        assert_eq!(url_without_secrets("not a url"), "(not a URL)");
    }

    #[tokio::test]
    async fn rows_are_listed_by_time_actor_and_action_and_never_change() {
        for db in backends().await {
            rows_are_listed_by_time_actor_and_action_and_never_change_on(&db).await;
        }
    }

    async fn rows_are_listed_by_time_actor_and_action_and_never_change_on(db: &Backend) {
        let ada = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let admin = Actor::admin("root");
        let as_ada = Actor::user("Ada", ada.id, "10.0.0.7");
        let first = record(
            db.exec(),
            &admin
                .entry(Action::UserCreate, "user ada@example.com")
                .detail(serde_json::json!({"user_id": ada.id, "name": "Ada"})),
        )
        .await
        .unwrap();
        let between = crate::db::now();
        let second = record(db.exec(), &as_ada.entry(Action::JobSubmit, "job 1"))
            .await
            .unwrap();
        let third = record(
            db.exec(),
            &Actor::unknown("10.0.0.9")
                .entry(Action::SessionSignIn, "key")
                .outcome(Outcome::Denied)
                .detail(serde_json::json!({"code": "unknown_api_key"})),
        )
        .await
        .unwrap();
        record(db.exec(), &as_ada.entry(Action::JobCancel, "job 1"))
            .await
            .unwrap();
        assert!(first < second && second < third, "{db:?}");

        let all = list(db.exec(), &AuditFilter::default()).await.unwrap();
        let actions: Vec<&str> = all.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            ["user.create", "job.submit", "session.sign_in", "job.cancel"],
            "{db:?}"
        );
        let created = &all[0];
        assert_eq!(created.actor, "admin:root");
        assert_eq!(created.actor_user_id, None);
        assert_eq!(created.source, LOCAL);
        assert_eq!(created.outcome, Outcome::Ok);
        assert_eq!(created.detail["name"], "Ada");
        assert_eq!(all[2].outcome, Outcome::Denied);
        assert_eq!(all[2].actor, UNKNOWN_ACTOR);
        assert_eq!(all[1].source, "10.0.0.7");
        assert_eq!(all[1].detail, serde_json::json!({}));

        let of = |filter: AuditFilter| async move {
            list(db.exec(), &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.action)
                .collect::<Vec<_>>()
        };
        let ada_by_name = of(AuditFilter {
            actor: Some("Ada".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(ada_by_name, ["job.submit", "job.cancel"], "{db:?}");
        let ada_by_id = of(AuditFilter {
            actor: Some(ada.id.to_string()),
            ..Default::default()
        })
        .await;
        assert_eq!(ada_by_id, ada_by_name, "{db:?}");
        let jobs_only = of(AuditFilter {
            action: Some("job".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(jobs_only, ["job.submit", "job.cancel"], "{db:?}");
        let one_action = of(AuditFilter {
            action: Some("job.cancel".into()),
            ..Default::default()
        })
        .await;
        assert_eq!(one_action, ["job.cancel"], "{db:?}");
        // `jo` is no prefix of `job.cancel`'s first part.
        assert!(of(AuditFilter {
            action: Some("jo".into()),
            ..Default::default()
        })
        .await
        .is_empty());
        let since = of(AuditFilter {
            since: Some(between),
            ..Default::default()
        })
        .await;
        assert_eq!(
            since,
            ["job.submit", "session.sign_in", "job.cancel"],
            "{db:?}"
        );
        let newest_two = of(AuditFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await;
        assert_eq!(newest_two, ["session.sign_in", "job.cancel"], "{db:?}");

        // Append-only: the schema refuses to change or delete a row.
        let update = on_exec!(db.exec(), |e| sqlx::query(
            "UPDATE audit_log SET actor = 'someone else'"
        )
        .execute(e)
        .await
        .map(drop));
        let err = update.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{db:?}: {err}");
        let delete = on_exec!(db.exec(), |e| sqlx::query("DELETE FROM audit_log")
            .execute(e)
            .await
            .map(drop));
        assert!(delete.is_err(), "{db:?}");
        assert_eq!(
            list(db.exec(), &AuditFilter::default())
                .await
                .unwrap()
                .len(),
            4
        );
    }

    #[tokio::test]
    async fn a_row_written_in_the_actions_transaction_goes_with_it() {
        for db in backends().await {
            a_row_written_in_the_actions_transaction_goes_with_it_on(&db).await;
        }
    }

    async fn a_row_written_in_the_actions_transaction_goes_with_it_on(db: &Backend) {
        let pool = db.db();
        let admin = Actor::admin("root");
        // Rolled back (dropped): neither the user nor the row.
        let mut tx = pool.begin_write().await.unwrap();
        users::create(&mut tx, "Ada", "ada@example.com")
            .await
            .unwrap();
        record(
            &mut tx,
            &admin.entry(Action::UserCreate, "user ada@example.com"),
        )
        .await
        .unwrap();
        drop(tx);
        assert!(users::list(&pool).await.unwrap().is_empty(), "{db:?}");
        assert!(list(&pool, &AuditFilter::default())
            .await
            .unwrap()
            .is_empty());
        // Committed: both. A function that begins a transaction of its own (a job's creation)
        // runs inside this one.
        let mut tx = pool.begin_write().await.unwrap();
        let ada = users::create(&mut tx, "Ada", "ada@example.com")
            .await
            .unwrap();
        let job = jobs::create(&mut tx, ada.id, "test", b"zip").await.unwrap();
        record(
            &mut tx,
            &Actor::user("Ada", ada.id, "127.0.0.1")
                .entry(Action::JobSubmit, format!("job {}", job.id)),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(list(&pool, &AuditFilter::default()).await.unwrap().len(), 1);

        // Retention deletes the job, never the row about it.
        sqlx_end_job(db, job.id).await;
        let rule = retention::Rule {
            older_than: chrono::Duration::zero(),
            keep_last: 0,
        };
        let pruned = retention::prune(&pool, rule, Utc::now() + chrono::Duration::hours(1), false)
            .await
            .unwrap();
        assert_eq!(pruned.jobs, 1, "{db:?}");
        let rows = list(&pool, &AuditFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 1, "{db:?}");
        assert_eq!(rows[0].target, format!("job {}", job.id));
    }

    /// Ends a queued job (as a controller would), so that retention may delete it.
    async fn sqlx_end_job(db: &Backend, id: crate::JobId) {
        on_exec!(db.exec(), |e| sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1 WHERE id = $2"
        )
        .bind(crate::db::now())
        .bind(id)
        .execute(e)
        .await
        .map(drop)
        .unwrap());
    }
}
