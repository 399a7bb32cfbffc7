//! The `cache_entries` table: the dependency cache's entries (see [`crate::cache`] for keys).
//! An entry is one Docker volume holding an install step's result, owned by one user:
//! `building` while a job installs into it, `ready` once that install passed (published, served
//! only to its owner's jobs with the same key), `removing` when the controller is to remove its
//! volume (the install failed, another entry won the race, or it was evicted or pruned).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{SqliteExecutor, SqlitePool};

use super::{lease, DbError};
use crate::{JobId, UserId};

/// The state of a cache entry (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum CacheState {
    Building,
    Ready,
    Removing,
}

/// A stored cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct CacheEntry {
    /// A random id (UUID).
    pub id: String,
    pub user_id: UserId,
    /// SHA-256 (hex) of the install's input.
    pub key: String,
    /// The Docker volume that holds the installed packages.
    pub volume: String,
    /// The Docker host that holds the volume (`local`).
    pub host: String,
    pub state: CacheState,
    /// The job that built it.
    pub job_id: Option<JobId>,
    /// Bytes the installed packages take (known once published).
    pub size_bytes: i64,
    /// Jobs that used it instead of installing.
    pub hits: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
}

/// The published entry of `user` for `key`, if there is one.
pub async fn find_ready(
    ex: impl SqliteExecutor<'_>,
    user: UserId,
    key: &str,
) -> Result<Option<CacheEntry>, DbError> {
    Ok(sqlx::query_as(
        "SELECT * FROM cache_entries WHERE user_id = ? AND key = ? AND state = 'ready'",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(ex)
    .await?)
}

/// Records that a job uses the published entry `id` instead of installing (its last use, for
/// eviction, and its hits). Returns false when the entry is no longer published (evicted or
/// pruned since it was found): the job must install instead. Fenced by the lease epoch.
pub async fn hit(pool: &SqlitePool, epoch: i64, id: &str) -> Result<bool, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let done = sqlx::query(
        "UPDATE cache_entries SET hits = hits + 1, last_used_at = ? WHERE id = ? AND state = 'ready'",
    )
    .bind(Utc::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Starts an entry for `user` and `key` that `job` installs into, in the volume `volume`
/// (`building`: served to nobody until [`publish`]). Fenced by the lease epoch.
pub async fn begin(
    pool: &SqlitePool,
    epoch: i64,
    user: UserId,
    key: &str,
    job: JobId,
    volume: &str,
) -> Result<CacheEntry, DbError> {
    let now = Utc::now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let entry = sqlx::query_as(
        "INSERT INTO cache_entries (id, user_id, key, volume, state, job_id, created_at, last_used_at)
         VALUES (?, ?, ?, ?, 'building', ?, ?, ?) RETURNING *",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(user)
    .bind(key)
    .bind(volume)
    .bind(job)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(entry)
}

/// What [`publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The entry is served to its owner's jobs from now on.
    Ready,
    /// Another job of the same user published the same key first: this entry is to be removed
    /// once its job is done with it.
    Duplicate,
    /// The entry is not `building` (it was pruned meanwhile): nothing changed.
    Gone,
}

/// Publishes the `building` entry whose volume is `volume` after its install passed, with its
/// size in bytes. Fenced by the lease epoch; one transaction, so two jobs with the same key
/// never both publish.
pub async fn publish(
    pool: &SqlitePool,
    epoch: i64,
    volume: &str,
    size_bytes: u64,
) -> Result<Published, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let Some(entry): Option<CacheEntry> =
        sqlx::query_as("SELECT * FROM cache_entries WHERE volume = ? AND state = 'building'")
            .bind(volume)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(Published::Gone);
    };
    let taken = find_ready(&mut *tx, entry.user_id, &entry.key)
        .await?
        .is_some();
    let state = if taken { "removing" } else { "ready" };
    sqlx::query(
        "UPDATE cache_entries SET state = ?, size_bytes = ?, last_used_at = ? WHERE id = ?",
    )
    .bind(state)
    .bind(size_bytes as i64)
    .bind(Utc::now())
    .bind(&entry.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if taken {
        Published::Duplicate
    } else {
        Published::Ready
    })
}

/// Gives up the entries a job was building and did not publish (its install failed, was
/// cancelled, or the job ended otherwise): they become `removing`. Returns how many.
pub async fn abandon(pool: &SqlitePool, epoch: i64, job: JobId) -> Result<u64, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let done = sqlx::query(
        "UPDATE cache_entries SET state = 'removing' WHERE job_id = ? AND state = 'building'",
    )
    .bind(job)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Entries that are `building` for a job that has ended (a controller stopped between the two):
/// they become `removing`. Returns how many.
pub async fn abandon_ended(pool: &SqlitePool) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE cache_entries SET state = 'removing'
         WHERE state = 'building' AND NOT EXISTS (
             SELECT 1 FROM jobs j WHERE j.id = cache_entries.job_id
               AND j.status IN ('queued', 'running'))",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Every entry, or one user's, most recently used first.
pub async fn list(
    ex: impl SqliteExecutor<'_>,
    user: Option<UserId>,
) -> Result<Vec<CacheEntry>, DbError> {
    Ok(sqlx::query_as(
        "SELECT * FROM cache_entries WHERE (?1 IS NULL OR user_id = ?1)
         ORDER BY last_used_at DESC, id",
    )
    .bind(user)
    .fetch_all(ex)
    .await?)
}

/// Bytes of the published entries (the cache's size).
pub async fn ready_bytes(ex: impl SqliteExecutor<'_>) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(SUM(size_bytes), 0) FROM cache_entries WHERE state = 'ready'",
    )
    .fetch_one(ex)
    .await?)
}

/// Marks published entries for removal (`ci-admin cache prune`): all of them, or one user's;
/// only those unused for `unused_for` when given. The controller removes their volumes.
/// Returns how many were marked.
pub async fn prune(
    pool: &SqlitePool,
    user: Option<UserId>,
    unused_for: Option<Duration>,
) -> Result<u64, DbError> {
    // A duration too long to subtract from now: nothing was unused that long.
    let before = match unused_for {
        None => None,
        Some(d) => match chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
        {
            Some(before) => Some(before),
            None => return Ok(0),
        },
    };
    let done = sqlx::query(
        "UPDATE cache_entries SET state = 'removing'
         WHERE state = 'ready' AND (?1 IS NULL OR user_id = ?1)
           AND (?2 IS NULL OR last_used_at < ?2)",
    )
    .bind(user)
    .bind(before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The bounds the controller keeps the cache within (`--cache-max-bytes`,
/// `--cache-max-bytes-per-user`, `--cache-max-age`; `None` is unbounded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheBounds {
    pub max_bytes: Option<u64>,
    pub max_bytes_per_user: Option<u64>,
    pub max_age: Option<Duration>,
}

/// Marks the published entries that break the bounds for removal: those unused for longer than
/// the maximum age, then the least recently used ones until each user is within the per-user
/// cap and everyone within the total cap. Returns the entries marked.
pub async fn evict(pool: &SqlitePool, bounds: &CacheBounds) -> Result<Vec<CacheEntry>, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Least recently used first.
    let ready: Vec<CacheEntry> = sqlx::query_as(
        "SELECT * FROM cache_entries WHERE state = 'ready' ORDER BY last_used_at, id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let now = Utc::now();
    let too_old = |e: &CacheEntry| {
        bounds
            .max_age
            .is_some_and(|age| (now - e.last_used_at).to_std().unwrap_or_default() > age)
    };
    let mut keep: Vec<&CacheEntry> = Vec::new();
    let mut evicted: Vec<CacheEntry> = Vec::new();
    for entry in &ready {
        if too_old(entry) {
            evicted.push(entry.clone());
        } else {
            keep.push(entry);
        }
    }
    let size = |e: &CacheEntry| e.size_bytes.max(0) as u64;
    if let Some(cap) = bounds.max_bytes_per_user {
        let mut per_user: std::collections::HashMap<UserId, u64> = Default::default();
        for entry in &keep {
            *per_user.entry(entry.user_id).or_default() += size(entry);
        }
        keep.retain(|entry| {
            let used = per_user.get_mut(&entry.user_id).expect("counted");
            if *used > cap {
                *used -= size(entry);
                evicted.push((*entry).clone());
                false
            } else {
                true
            }
        });
    }
    if let Some(cap) = bounds.max_bytes {
        let mut used: u64 = keep.iter().map(|e| size(e)).sum();
        keep.retain(|entry| {
            if used > cap {
                used -= size(entry);
                evicted.push((*entry).clone());
                false
            } else {
                true
            }
        });
    }
    for entry in &evicted {
        sqlx::query("UPDATE cache_entries SET state = 'removing' WHERE id = ?")
            .bind(&entry.id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(evicted)
}

/// Entries to remove whose volumes no running job mounts (a job's steps name the volumes they
/// mount) and that no job chose in the last `grace` (a job that just chose an entry has not
/// stored its plan yet; an entry no job ever chose needs no grace).
pub async fn removable(
    ex: impl SqliteExecutor<'_>,
    grace: Duration,
) -> Result<Vec<CacheEntry>, DbError> {
    let before = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
    Ok(sqlx::query_as(
        "SELECT * FROM cache_entries c WHERE state = 'removing' AND (hits = 0 OR last_used_at <= ?)
           AND NOT EXISTS (
             SELECT 1 FROM job_steps s JOIN jobs j ON j.id = s.job_id
             WHERE j.status = 'running' AND instr(s.spec, c.volume) > 0)
         ORDER BY last_used_at",
    )
    .bind(before)
    .fetch_all(ex)
    .await?)
}

/// Forgets an entry whose volume was removed.
pub async fn forget(ex: impl SqliteExecutor<'_>, id: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM cache_entries WHERE id = ?")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Whether a volume is one the cache knows (any state): the controller removes cache volumes
/// that are not.
pub async fn knows_volume(ex: impl SqliteExecutor<'_>, volume: &str) -> Result<bool, DbError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM cache_entries WHERE volume = ?")
            .bind(volume)
            .fetch_one(ex)
            .await?
            > 0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{jobs, users};
    use crate::testing::{claimed_job_with_steps, temp_db};

    #[tokio::test]
    async fn an_entry_is_served_only_once_published_and_only_to_its_owner() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        let other = users::create(&pool, "Bob", "bob@example.com")
            .await
            .unwrap();
        let entry = begin(&pool, epoch, job.user_id, "k1", job.id, "vol-a")
            .await
            .unwrap();
        assert_eq!(entry.state, CacheState::Building);
        assert_eq!(find_ready(&pool, job.user_id, "k1").await.unwrap(), None);
        assert_eq!(
            publish(&pool, epoch, "vol-a", 1234).await.unwrap(),
            Published::Ready
        );
        let ready = find_ready(&pool, job.user_id, "k1").await.unwrap().unwrap();
        assert_eq!((ready.volume.as_str(), ready.size_bytes), ("vol-a", 1234));
        assert_eq!(ready_bytes(&pool).await.unwrap(), 1234);
        assert_eq!(find_ready(&pool, other.id, "k1").await.unwrap(), None);
        assert!(hit(&pool, epoch, &ready.id).await.unwrap());
        assert_eq!(list(&pool, None).await.unwrap()[0].hits, 1);

        // A second build of the same key loses the race and is to be removed.
        begin(&pool, epoch, job.user_id, "k1", job.id, "vol-b")
            .await
            .unwrap();
        assert_eq!(
            publish(&pool, epoch, "vol-b", 1).await.unwrap(),
            Published::Duplicate
        );
        assert_eq!(
            publish(&pool, epoch, "vol-b", 1).await.unwrap(),
            Published::Gone
        );
        // A failed build is abandoned, and nothing in use is removable.
        begin(&pool, epoch, job.user_id, "k2", job.id, "vol-c")
            .await
            .unwrap();
        assert_eq!(abandon(&pool, epoch, job.id).await.unwrap(), 1);
        let removable_now = volumes(removable(&pool, Duration::ZERO).await.unwrap());
        assert_eq!(removable_now, ["vol-b", "vol-c"]);
        assert_eq!(list(&pool, Some(other.id)).await.unwrap(), []);
        let all = list(&pool, None).await.unwrap();
        let c = all.iter().find(|e| e.volume == "vol-c").unwrap();
        forget(&pool, &c.id).await.unwrap();
        assert!(knows_volume(&pool, "vol-a").await.unwrap());
        assert!(!knows_volume(&pool, "vol-c").await.unwrap());
        // Another controller's epoch cannot write.
        lease::acquire(&pool, "other").await.unwrap();
        assert!(matches!(
            begin(&pool, epoch, job.user_id, "k3", job.id, "vol-d").await,
            Err(DbError::LeaseLost(_))
        ));
        let _ = jobs::get(&pool, job.id).await.unwrap();
    }

    fn volumes(entries: Vec<CacheEntry>) -> Vec<String> {
        entries.into_iter().map(|e| e.volume).collect()
    }

    #[tokio::test]
    async fn eviction_keeps_each_user_and_everyone_within_the_caps_least_recently_used_first() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        for (i, size) in [100u64, 200, 300].into_iter().enumerate() {
            let volume = format!("v{i}");
            begin(&pool, epoch, job.user_id, &format!("k{i}"), job.id, &volume)
                .await
                .unwrap();
            publish(&pool, epoch, &volume, size).await.unwrap();
        }
        // v0 was used last: v1 is the least recently used now.
        let v0 = list(&pool, None).await.unwrap();
        let v0 = v0.iter().find(|e| e.volume == "v0").unwrap();
        hit(&pool, epoch, &v0.id).await.unwrap();
        let bounds = CacheBounds {
            max_bytes_per_user: Some(450),
            ..CacheBounds::default()
        };
        assert_eq!(volumes(evict(&pool, &bounds).await.unwrap()), ["v1"]);
        let bounds = CacheBounds {
            max_bytes: Some(100),
            ..CacheBounds::default()
        };
        assert_eq!(volumes(evict(&pool, &bounds).await.unwrap()), ["v2"]);
        let aged = CacheBounds {
            max_age: Some(Duration::ZERO),
            ..CacheBounds::default()
        };
        assert_eq!(evict(&pool, &aged).await.unwrap().len(), 1);
        assert_eq!(evict(&pool, &aged).await.unwrap(), []);
        // Pruning marks what is left; building entries of ended jobs are abandoned.
        begin(&pool, epoch, job.user_id, "k9", job.id, "v9")
            .await
            .unwrap();
        assert_eq!(abandon_ended(&pool).await.unwrap(), 0, "the job runs");
        publish(&pool, epoch, "v9", 1).await.unwrap();
        assert_eq!(prune(&pool, Some(job.user_id), None).await.unwrap(), 1);
        assert_eq!(prune(&pool, None, None).await.unwrap(), 0);
        // A pruned entry is not served any more, and one chosen just before waits out the grace.
        let v9 = list(&pool, None).await.unwrap();
        let v9 = v9.iter().find(|e| e.volume == "v9").unwrap();
        assert!(!hit(&pool, epoch, &v9.id).await.unwrap());
        let v0 = list(&pool, None).await.unwrap();
        let v0 = v0.iter().find(|e| e.volume == "v0").unwrap().clone();
        assert_eq!(v0.hits, 1);
        let waiting = volumes(removable(&pool, Duration::from_secs(60)).await.unwrap());
        assert!(!waiting.contains(&"v0".to_owned()), "{waiting:?}");
        assert!(
            waiting.contains(&"v9".to_owned()),
            "never chosen: {waiting:?}"
        );
    }
}
