//! The `secret_variables` table: named values of a user or a team (`ci secrets set NAME`),
//! sealed with the operator's key ([`crate::secrets`], bound to the owner and the name). The API
//! never returns a value; the controller opens the ones a step's task lists (`secrets = [...]`
//! under `[tool.ci.tasks.<name>]`), gives them to that step as environment variables and masks
//! them in the log.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{on_exec, DbError, Exec};
use crate::secrets::{SecretsError, SecretsKey};
use crate::{TeamId, UserId};

/// Whose a secret variable is: a user's (given to their own jobs) or a team's (given to the
/// team's jobs, set and removed by any member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretOwner {
    User(UserId),
    Team(TeamId),
}

impl SecretOwner {
    /// The owner of the secrets a job gets: its team's for a team's job, else its submitter's.
    pub fn of(job: &super::jobs::Job) -> Self {
        match job.team_id {
            Some(team) => Self::Team(team),
            None => Self::User(job.user_id),
        }
    }

    /// What a sealed value is bound to: its owner and name.
    fn aad(&self, name: &str) -> String {
        match self {
            Self::User(id) => format!("secret-variable user {id} {name}"),
            Self::Team(id) => format!("secret-variable team {id} {name}"),
        }
    }

    /// `(user_id, team_id)`: exactly one is set.
    fn columns(&self) -> (Option<UserId>, Option<TeamId>) {
        match *self {
            Self::User(id) => (Some(id), None),
            Self::Team(id) => (None, Some(id)),
        }
    }
}

/// A secret variable as listed: never its value.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretVariable {
    pub name: String,
    /// The name of the user who last set it.
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Stores (or replaces) `owner`'s secret `name`, sealing `value` with `key`; `by` is the name of
/// the user who sets it. Name and value must pass
/// [`crate::secrets::check_variable_name`] and [`crate::secrets::check_variable_value`].
pub async fn set(
    ex: impl Into<Exec<'_>>,
    key: &SecretsKey,
    owner: SecretOwner,
    name: &str,
    value: &str,
    by: &str,
) -> Result<SecretVariable, DbError> {
    let sealed = key.seal(value, &owner.aad(name));
    let now = super::now();
    let (user_id, team_id) = owner.columns();
    let conflict = match owner {
        SecretOwner::User(_) => "(user_id, name) WHERE user_id IS NOT NULL",
        SecretOwner::Team(_) => "(team_id, name) WHERE team_id IS NOT NULL",
    };
    let sql = format!(
        "INSERT INTO secret_variables (id, user_id, team_id, name, secret, updated_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT {conflict} DO UPDATE
         SET secret = excluded.secret, updated_by = excluded.updated_by,
             updated_at = excluded.updated_at"
    );
    on_exec!(ex, |e| sqlx::query(&sql)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(user_id)
        .bind(team_id)
        .bind(name)
        .bind(&sealed)
        .bind(by)
        .bind(now)
        .execute(e)
        .await
        .map(drop)?);
    Ok(SecretVariable {
        name: name.to_owned(),
        updated_by: by.to_owned(),
        updated_at: now,
    })
}

/// `owner`'s secrets by name, without their values.
pub async fn list(
    ex: impl Into<Exec<'_>>,
    owner: SecretOwner,
) -> Result<Vec<SecretVariable>, DbError> {
    let (user_id, team_id) = owner.columns();
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT name, updated_by, updated_at FROM secret_variables
         WHERE user_id IS NOT DISTINCT FROM $1 AND team_id IS NOT DISTINCT FROM $2
         ORDER BY name",
    )
    .bind(user_id)
    .bind(team_id)
    .fetch_all(e)
    .await?))
}

/// Removes `owner`'s secret `name`; false if there was none.
pub async fn remove(
    ex: impl Into<Exec<'_>>,
    owner: SecretOwner,
    name: &str,
) -> Result<bool, DbError> {
    let (user_id, team_id) = owner.columns();
    let done = on_exec!(ex, |e| sqlx::query(
        "DELETE FROM secret_variables
         WHERE user_id IS NOT DISTINCT FROM $1 AND team_id IS NOT DISTINCT FROM $2 AND name = $3"
    )
    .bind(user_id)
    .bind(team_id)
    .bind(name)
    .execute(e)
    .await
    .map(|r| r.rows_affected())?);
    Ok(done > 0)
}

/// `owner`'s secrets among `names`, opened with `key`, in the order of `names`: a name with no
/// stored secret is `None`; one that does not open (another key) is `Some(Err)`.
pub async fn open(
    ex: impl Into<Exec<'_>>,
    key: &SecretsKey,
    owner: SecretOwner,
    names: &[String],
) -> Result<Vec<(String, Option<Result<String, SecretsError>>)>, DbError> {
    let (user_id, team_id) = owner.columns();
    let rows: Vec<(String, String)> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT name, secret FROM secret_variables
         WHERE user_id IS NOT DISTINCT FROM $1 AND team_id IS NOT DISTINCT FROM $2",
    )
    .bind(user_id)
    .bind(team_id)
    .fetch_all(e)
    .await?);
    Ok(names
        .iter()
        .map(|name| {
            let sealed = rows.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            let opened = sealed.map(|s| key.open(s, &owner.aad(name)));
            (name.clone(), opened)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{teams, users};
    use crate::testing::backends;

    #[tokio::test]
    async fn secrets_are_sealed_per_owner_and_name_on_every_backend() {
        let key = SecretsKey::from_hex(&"11".repeat(32)).unwrap();
        let other_key = SecretsKey::from_hex(&"22".repeat(32)).unwrap();
        for db in backends().await {
            let ada = users::create(db.exec(), "Ada", "ada@example.com")
                .await
                .unwrap();
            let bob = users::create(db.exec(), "Bob", "bob@example.com")
                .await
                .unwrap();
            let team = teams::create(db.exec(), "platform").await.unwrap();
            let mine = SecretOwner::User(ada.id);
            let ours = SecretOwner::Team(team.id);
            set(db.exec(), &key, mine, "TOKEN", "ada-token-1", "Ada")
                .await
                .unwrap();
            set(db.exec(), &key, mine, "TOKEN", "ada-token-2", "Ada")
                .await
                .unwrap();
            set(db.exec(), &key, ours, "TOKEN", "team-token", "Bob")
                .await
                .unwrap();
            let names = ["TOKEN".to_owned(), "MISSING".to_owned()];
            let opened = open(db.exec(), &key, mine, &names).await.unwrap();
            assert_eq!(
                opened[0].1.as_ref().unwrap().as_ref().unwrap(),
                "ada-token-2"
            );
            assert!(opened[1].1.is_none());
            let opened = open(db.exec(), &key, ours, &names).await.unwrap();
            assert_eq!(
                opened[0].1.as_ref().unwrap().as_ref().unwrap(),
                "team-token"
            );
            let theirs = open(db.exec(), &key, SecretOwner::User(bob.id), &names)
                .await
                .unwrap();
            assert!(
                theirs[0].1.is_none(),
                "bob's own jobs do not get the team's"
            );
            let wrong = open(db.exec(), &other_key, mine, &names).await.unwrap();
            assert!(wrong[0].1.as_ref().unwrap().is_err());

            let listed = list(db.exec(), ours).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].updated_by, "Bob");
            assert!(!serde_json::to_string(&listed)
                .unwrap()
                .contains("team-token"));
            let stored: Vec<String> = crate::db::on_exec!(db.exec(), |e| sqlx::query_scalar(
                "SELECT secret FROM secret_variables"
            )
            .fetch_all(e)
            .await
            .unwrap());
            assert!(
                stored.iter().all(|s| !s.contains("token")),
                "sealed at rest"
            );

            assert!(remove(db.exec(), mine, "TOKEN").await.unwrap());
            assert!(!remove(db.exec(), mine, "TOKEN").await.unwrap());
            assert_eq!(list(db.exec(), ours).await.unwrap().len(), 1);
        }
    }
}
