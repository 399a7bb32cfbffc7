//! The `docker_hosts` table: the Docker engines the controller runs jobs on, as it last saw
//! them (health, capacity, running jobs, CPU and memory in use), written by the controller at
//! every health check so that any replica or `ci-admin hosts` can read them.

use chrono::{DateTime, Utc};

use super::{lease, on_exec, BeginWrite as _, DbError, Exec};

/// One host as the controller last saw it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct DockerHost {
    /// Its name in the controller's host list (what jobs record as their host).
    pub name: String,
    /// Where the controller reaches its engine (`unix:///…`, `tcp://…:2376`).
    pub url: String,
    /// Jobs it may run at once; `None`: bounded only by `--max-concurrent-jobs`.
    pub capacity: Option<i64>,
    pub healthy: bool,
    /// Jobs the controller runs on it.
    pub running: i64,
    /// CPU in use by its job containers, in thousandths of a core (Docker's container stats).
    pub cpu_millicores: Option<i64>,
    /// Memory in use by its job containers, in bytes (Docker's container stats).
    pub memory_bytes: Option<i64>,
    /// Why it is not healthy: the last failed check.
    pub error: Option<String>,
    /// When it stopped answering (while it does not answer).
    pub unhealthy_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
}

/// Records what the controller holding `epoch` saw of a host (fenced by the lease).
pub async fn record(ex: impl Into<Exec<'_>>, epoch: i64, host: &DockerHost) -> Result<(), DbError> {
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        sqlx::query(
            "INSERT INTO docker_hosts (name, url, capacity, healthy, running, cpu_millicores,
                 memory_bytes, error, unhealthy_at, checked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, capacity = excluded.capacity,
                 healthy = excluded.healthy, running = excluded.running,
                 cpu_millicores = excluded.cpu_millicores, memory_bytes = excluded.memory_bytes,
                 error = excluded.error, unhealthy_at = excluded.unhealthy_at,
                 checked_at = excluded.checked_at",
        )
        .bind(&host.name)
        .bind(&host.url)
        .bind(host.capacity)
        .bind(host.healthy)
        .bind(host.running)
        .bind(host.cpu_millicores)
        .bind(host.memory_bytes)
        .bind(host.error.as_deref())
        .bind(host.unhealthy_at.map(super::timestamp))
        .bind(super::timestamp(host.checked_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Forgets the hosts not in `keep` (the controller's list changed): fenced by the lease.
pub async fn retain(ex: impl Into<Exec<'_>>, epoch: i64, keep: &[String]) -> Result<(), DbError> {
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM docker_hosts")
            .fetch_all(&mut *tx)
            .await?;
        for name in names.iter().filter(|name| !keep.contains(name)) {
            sqlx::query("DELETE FROM docker_hosts WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Every host, by name.
pub async fn list(ex: impl Into<Exec<'_>>) -> Result<Vec<DockerHost>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM docker_hosts ORDER BY name"
    )
    .fetch_all(e)
    .await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{backends, job_with_lease, take_over_lease};

    fn host(name: &str, healthy: bool, running: i64) -> DockerHost {
        DockerHost {
            name: name.into(),
            url: format!("unix:///run/{name}.sock"),
            capacity: Some(2),
            healthy,
            running,
            cpu_millicores: Some(1500),
            memory_bytes: Some(64 << 20),
            error: (!healthy).then(|| "connection refused".into()),
            unhealthy_at: (!healthy).then(super::super::now),
            checked_at: super::super::now(),
        }
    }

    #[tokio::test]
    async fn hosts_are_recorded_updated_and_forgotten_under_the_lease_on_every_backend() {
        for db in backends().await {
            let (_, epoch) = job_with_lease(&db).await;
            record(db.exec(), epoch, &host("a", true, 0)).await.unwrap();
            record(db.exec(), epoch, &host("b", true, 1)).await.unwrap();
            let b_down = host("b", false, 1);
            record(db.exec(), epoch, &b_down).await.unwrap();
            let names: Vec<_> = list(db.exec()).await.unwrap();
            assert_eq!(names.len(), 2, "{db:?}");
            assert_eq!((names[0].name.as_str(), names[0].healthy), ("a", true));
            assert_eq!(
                names[1], b_down,
                "the second record replaced the first ({db:?})"
            );
            retain(db.exec(), epoch, &["b".into()]).await.unwrap();
            assert_eq!(list(db.exec()).await.unwrap(), vec![b_down], "{db:?}");

            take_over_lease(&db).await;
            let refused = record(db.exec(), epoch, &host("c", true, 0)).await;
            assert!(matches!(refused, Err(DbError::LeaseLost(_))), "{db:?}");
            assert_eq!(list(db.exec()).await.unwrap().len(), 1, "{db:?}");
        }
    }
}
