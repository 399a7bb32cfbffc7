//! The `users` table.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{is_unique_violation, on_exec, DbError, Exec};
use crate::UserId;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// Why an email address is not acceptable, or `None` when it is.
pub fn email_problem(email: &str) -> Option<&'static str> {
    let (local, domain) = email.split_once('@')?;
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains spaces or control characters");
    }
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Some("it must look like name@example.com");
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Some("its domain must contain a dot, like example.com");
    }
    if email.len() > 254 {
        return Some("it is longer than 254 characters");
    }
    None
}

/// Checks an email address: `Err` holds what is wrong with it.
pub fn validate_email(email: &str) -> Result<(), String> {
    if !email.contains('@') {
        return Err(format!(
            "invalid email {email:?}: it must look like name@example.com"
        ));
    }
    match email_problem(email) {
        Some(problem) => Err(format!("invalid email {email:?}: {problem}")),
        None => Ok(()),
    }
}

pub async fn create(ex: impl Into<Exec<'_>>, name: &str, email: &str) -> Result<User, DbError> {
    let user = User {
        id: UserId::new(),
        name: name.to_owned(),
        email: email.to_owned(),
        active: true,
        created_at: super::now(),
    };
    let inserted = on_exec!(ex, |e| {
        sqlx::query(
            "INSERT INTO users (id, name, email, active, created_at) VALUES ($1, $2, $3, TRUE, $4)",
        )
        .bind(user.id)
        .bind(&user.name)
        .bind(&user.email)
        .bind(user.created_at)
        .execute(e)
        .await
        .map(drop)
    });
    inserted.map_err(|e| {
        if is_unique_violation(&e) {
            DbError::EmailTaken(email.to_owned())
        } else {
            e.into()
        }
    })?;
    Ok(user)
}

pub async fn list(ex: impl Into<Exec<'_>>) -> Result<Vec<User>, DbError> {
    Ok(on_exec!(ex, |e| {
        sqlx::query_as("SELECT * FROM users ORDER BY created_at, email")
            .fetch_all(e)
            .await?
    }))
}

pub async fn get(ex: impl Into<Exec<'_>>, id: UserId) -> Result<Option<User>, DbError> {
    Ok(on_exec!(ex, |e| {
        sqlx::query_as("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(e)
            .await?
    }))
}

/// Case-insensitive for ASCII letters (what SQLite's `NOCASE` and `lower` fold; PostgreSQL's
/// unique index is on `lower(email)`).
pub async fn find_by_email(ex: impl Into<Exec<'_>>, email: &str) -> Result<Option<User>, DbError> {
    Ok(on_exec!(ex, |e| {
        sqlx::query_as("SELECT * FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(e)
            .await?
    }))
}

/// Activates or deactivates a user; `None` if there is no such user.
pub async fn set_active(
    ex: impl Into<Exec<'_>>,
    id: UserId,
    active: bool,
) -> Result<Option<User>, DbError> {
    Ok(on_exec!(ex, |e| {
        sqlx::query_as("UPDATE users SET active = $1 WHERE id = $2 RETURNING *")
            .bind(active)
            .bind(id)
            .fetch_optional(e)
            .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Backend;

    #[tokio::test]
    async fn create_get_and_duplicate_email() {
        for db in crate::testing::backends().await {
            create_get_and_duplicate_email_on(&db).await;
        }
    }

    async fn create_get_and_duplicate_email_on(db: &Backend) {
        let user = create(db.exec(), "Ada", "ada@example.com").await.unwrap();
        assert_eq!(get(db.exec(), user.id).await.unwrap(), Some(user.clone()));
        assert_eq!(
            find_by_email(db.exec(), "ADA@example.com").await.unwrap(),
            Some(user.clone())
        );
        let err = create(db.exec(), "Ada again", "Ada@Example.com")
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::EmailTaken(_)), "{err:?}");
        let off = set_active(db.exec(), user.id, false)
            .await
            .unwrap()
            .unwrap();
        assert!(!off.active);
        assert_eq!(list(db.exec()).await.unwrap().len(), 1);
        assert!(set_active(db.exec(), UserId::new(), true)
            .await
            .unwrap()
            .is_none());
    }

    #[test]
    fn email_validation() {
        assert!(validate_email("a@b.co").is_ok());
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a b@c.de", "a@@b.co", "a@.b", "a@b.",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
