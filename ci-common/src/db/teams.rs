//! The `teams` and `team_members` tables. A team is a named group of users; a job submitted to a
//! team (`jobs.team_id`) is visible to every member (see [`super::jobs`]'s visibility rule) and
//! uses the team's dependency cache. Administrators manage teams with `ci-admin team`; members
//! see their teams with `ci teams`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::users::User;
use super::{is_unique_violation, on_exec, BeginWrite as _, DbError, Exec};
use crate::{TeamId, UserId};

/// A team.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Team {
    pub id: TeamId,
    /// Unique, compared without regard to ASCII case ([`check_name`] gives the shape).
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A team with its number of members, as `ci-admin team list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct TeamSummary {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub team: Team,
    pub members: i64,
}

/// The longest team name, in bytes.
pub const NAME_MAX_LEN: usize = 64;

/// Checks a team name: 1 to 64 ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit (`Err` says what is wrong, for the person who typed it).
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > NAME_MAX_LEN {
        return Err(format!(
            "invalid team name {name:?}: it must be 1 to {NAME_MAX_LEN} characters long"
        ));
    }
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "invalid team name {name:?}: use letters, digits, '-', '_' and '.', starting with a \
             letter or digit (e.g. platform-team)"
        ));
    }
    Ok(())
}

/// Creates a team. The name must pass [`check_name`].
///
/// # Errors
///
/// [`DbError::TeamNameTaken`] when a team of that name (in any ASCII case) exists.
pub async fn create(ex: impl Into<Exec<'_>>, name: &str) -> Result<Team, DbError> {
    let team = Team {
        id: TeamId::new(),
        name: name.to_owned(),
        created_at: super::now(),
    };
    let inserted = on_exec!(ex, |e| {
        sqlx::query("INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(team.id)
            .bind(&team.name)
            .bind(team.created_at)
            .execute(e)
            .await
            .map(drop)
    });
    inserted.map_err(|e| {
        if is_unique_violation(&e) {
            DbError::TeamNameTaken(name.to_owned())
        } else {
            e.into()
        }
    })?;
    Ok(team)
}

/// Every team with its number of members, by name.
pub async fn list(ex: impl Into<Exec<'_>>) -> Result<Vec<TeamSummary>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT t.*, (SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members
         FROM teams t ORDER BY lower(t.name)",
    )
    .fetch_all(e)
    .await?))
}

/// The team with this id, if there is one.
pub async fn get(ex: impl Into<Exec<'_>>, id: TeamId) -> Result<Option<Team>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM teams WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(e)
    .await?))
}

/// The team of that name (ASCII case ignored), if there is one.
pub async fn find_by_name(ex: impl Into<Exec<'_>>, name: &str) -> Result<Option<Team>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM teams WHERE lower(name) = lower($1)"
    )
    .bind(name)
    .fetch_optional(e)
    .await?))
}

/// The team of that name if `user` is one of its members: what a user may submit to. A team the
/// user is not in is indistinguishable from no team.
pub async fn membership(
    ex: impl Into<Exec<'_>>,
    user: UserId,
    name: &str,
) -> Result<Option<Team>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT t.* FROM teams t JOIN team_members m ON m.team_id = t.id
         WHERE lower(t.name) = lower($1) AND m.user_id = $2",
    )
    .bind(name)
    .bind(user)
    .fetch_optional(e)
    .await?))
}

/// The teams `user` is a member of, by name.
pub async fn of_user(ex: impl Into<Exec<'_>>, user: UserId) -> Result<Vec<Team>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT t.* FROM teams t JOIN team_members m ON m.team_id = t.id
         WHERE m.user_id = $1 ORDER BY lower(t.name)",
    )
    .bind(user)
    .fetch_all(e)
    .await?))
}

/// The members of a team, by name.
pub async fn members(ex: impl Into<Exec<'_>>, team: TeamId) -> Result<Vec<User>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT u.* FROM users u JOIN team_members m ON m.user_id = u.id
         WHERE m.team_id = $1 ORDER BY u.name, u.email",
    )
    .bind(team)
    .fetch_all(e)
    .await?))
}

/// Adds `user` to `team`; `false` when they were a member already.
pub async fn add_member(
    ex: impl Into<Exec<'_>>,
    team: TeamId,
    user: UserId,
) -> Result<bool, DbError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| sqlx::query(
        "INSERT INTO team_members (team_id, user_id, added_at) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, user_id) DO NOTHING",
    )
    .bind(team)
    .bind(user)
    .bind(now)
    .execute(e)
    .await?
    .rows_affected()
        == 1))
}

/// Removes `user` from `team`; `false` when they were not a member. The user loses access to
/// the team's jobs at once: every request checks membership, and open streams check it again
/// within a few seconds.
pub async fn remove_member(
    ex: impl Into<Exec<'_>>,
    team: TeamId,
    user: UserId,
) -> Result<bool, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query(
        "DELETE FROM team_members WHERE team_id = $1 AND user_id = $2"
    )
    .bind(team)
    .bind(user)
    .execute(e)
    .await?
    .rows_affected()
        == 1))
}

/// Deletes a team with its memberships, in one transaction. Its jobs stay, visible only to
/// whoever submitted each; its cache entries are given up (the controller removes their
/// volumes). `false`
/// when there is no such team.
pub async fn delete(ex: impl Into<Exec<'_>>, team: TeamId) -> Result<bool, DbError> {
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        // The schema's foreign keys do the same; stated here so that it does not depend on
        // them being enforced.
        sqlx::query("UPDATE jobs SET team_id = NULL WHERE team_id = $1")
            .bind(team)
            .execute(&mut *tx)
            .await?;
        // The team's cache entries are no longer served; the controller removes their volumes
        // once no job uses them.
        sqlx::query(
            "UPDATE cache_entries SET state = 'removing', team_id = NULL WHERE team_id = $1",
        )
        .bind(team)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(team)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        deleted
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users;
    use crate::testing::Backend;

    #[tokio::test]
    async fn teams_and_members() {
        for db in crate::testing::backends().await {
            teams_and_members_on(&db).await;
        }
    }

    async fn teams_and_members_on(db: &Backend) {
        let ada = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let bob = users::create(db.exec(), "Bob", "bob@example.com")
            .await
            .unwrap();
        let team = create(db.exec(), "platform").await.unwrap();
        let err = create(db.exec(), "Platform").await.unwrap_err();
        assert!(matches!(err, DbError::TeamNameTaken(_)), "{err:?}");
        assert_eq!(
            find_by_name(db.exec(), "PLATFORM").await.unwrap(),
            Some(team.clone())
        );

        assert!(add_member(db.exec(), team.id, ada.id).await.unwrap());
        assert!(!add_member(db.exec(), team.id, ada.id).await.unwrap());
        assert_eq!(
            membership(db.exec(), ada.id, "platform").await.unwrap(),
            Some(team.clone())
        );
        assert_eq!(
            membership(db.exec(), bob.id, "platform").await.unwrap(),
            None
        );
        assert_eq!(
            of_user(db.exec(), ada.id).await.unwrap(),
            std::slice::from_ref(&team)
        );
        assert_eq!(
            members(db.exec(), team.id).await.unwrap(),
            std::slice::from_ref(&ada)
        );
        let listed = list(db.exec()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].members, 1);

        assert!(remove_member(db.exec(), team.id, ada.id).await.unwrap());
        assert!(!remove_member(db.exec(), team.id, ada.id).await.unwrap());
        assert_eq!(
            membership(db.exec(), ada.id, "platform").await.unwrap(),
            None
        );

        add_member(db.exec(), team.id, bob.id).await.unwrap();
        assert!(delete(db.exec(), team.id).await.unwrap());
        assert!(!delete(db.exec(), team.id).await.unwrap());
        assert_eq!(find_by_name(db.exec(), "platform").await.unwrap(), None);
        assert!(of_user(db.exec(), bob.id).await.unwrap().is_empty());
    }

    #[test]
    fn team_names() {
        for good in ["platform", "QA", "team-1", "a.b_c", "x"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "-x", ".x", "a b", "été", &"a".repeat(65), "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
