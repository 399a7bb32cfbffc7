//! The `cache_entries` table: the dependency cache's entries (see [`crate::cache`] for keys).
//! An entry is one Docker volume holding an install step's result, owned by one user, or by a
//! team when a team's job built it ([`CacheScope`]):
//! `building` while a job installs into it, `ready` once that install passed (published, served
//! only to its owner's jobs with the same key), `removing` when the controller is to remove its
//! volume (the install failed, another entry won the race, or it was evicted or pruned).

use std::time::Duration;

use super::{lease, on_exec, BeginWrite as _, DbError, Exec};
use crate::{JobId, TeamId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The state of a cache entry (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum CacheState {
    Building,
    Ready,
    Removing,
}

/// Whose jobs an entry is served to: a user's own jobs, or the jobs of a team (whoever of its
/// members submitted them). Never served across scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheScope {
    /// The user whose job builds or uses the entry (for a team's entry, the member who built
    /// it; eviction counts it against them).
    pub user: UserId,
    /// The team, for a team's job.
    pub team: Option<TeamId>,
}

impl CacheScope {
    /// The scope of a job's cache: its team's, or its submitter's.
    pub fn of(job: &super::jobs::Job) -> Self {
        Self {
            user: job.user_id,
            team: job.team_id,
        }
    }
}

impl From<UserId> for CacheScope {
    /// A user's own scope.
    fn from(user: UserId) -> Self {
        Self { user, team: None }
    }
}

/// A stored cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct CacheEntry {
    /// A random id (UUID).
    pub id: String,
    pub user_id: UserId,
    /// The team whose jobs it serves (`None`: its user's own jobs).
    pub team_id: Option<TeamId>,
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

/// The published entry of `scope` for `key` on the Docker host `host` (a volume lives on one
/// host), if there is one.
pub async fn find_ready(
    ex: impl Into<Exec<'_>>,
    host: &str,
    scope: CacheScope,
    key: &str,
) -> Result<Option<CacheEntry>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM cache_entries
         WHERE host = $1 AND key = $3 AND state = 'ready'
           AND ((team_id IS NULL AND $4 IS NULL AND user_id = $2) OR team_id = $4)",
    )
    .bind(host)
    .bind(scope.user)
    .bind(key)
    .bind(scope.team)
    .fetch_optional(e)
    .await?))
}

/// Records that a job uses the published entry `id` instead of installing (its last use, for
/// eviction, and its hits). Returns false when the entry is no longer published (evicted or
/// pruned since it was found): the job must install instead. Fenced by the lease epoch.
pub async fn hit(ex: impl Into<Exec<'_>>, epoch: i64, id: &str) -> Result<bool, DbError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let done = sqlx::query(
            "UPDATE cache_entries SET hits = hits + 1, last_used_at = $1
             WHERE id = $2 AND state = 'ready'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done.rows_affected() == 1
    }))
}

/// Starts an entry for `scope` and `key` that `job` installs into, in the volume `volume` on the
/// Docker host `host` (`building`: served to nobody until [`publish`]). Fenced by the lease
/// epoch.
pub async fn begin(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    host: &str,
    scope: CacheScope,
    key: &str,
    job: JobId,
    volume: &str,
) -> Result<CacheEntry, DbError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let entry = sqlx::query_as(
            "INSERT INTO cache_entries
                 (id, user_id, key, volume, state, job_id, created_at, last_used_at, host,
                  team_id)
             VALUES ($1, $2, $3, $4, 'building', $5, $6, $7, $8, $9) RETURNING *",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(scope.user)
        .bind(key)
        .bind(volume)
        .bind(job)
        .bind(now)
        .bind(now)
        .bind(host)
        .bind(scope.team)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        entry
    }))
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
/// never both publish: on SQLite the transaction holds the database's write lock; on
/// PostgreSQL, whose writers do not exclude each other, the owner's row (the team's for a
/// team's entry, else the user's) is locked first (to the end of the transaction), so that two
/// publishes in one scope wait for each other instead of both finding no published entry (the
/// second would break `cache_entries_ready`).
pub async fn publish(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    volume: &str,
    size_bytes: u64,
) -> Result<Published, DbError> {
    let ex = ex.into();
    let postgres = ex.is_postgres();
    let now = super::now();
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        if postgres {
            sqlx::query(
                "SELECT 1 FROM users WHERE id =
                     (SELECT user_id FROM cache_entries WHERE volume = $1 AND team_id IS NULL)
                 FOR NO KEY UPDATE",
            )
            .bind(volume)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "SELECT 1 FROM teams WHERE id =
                     (SELECT team_id FROM cache_entries WHERE volume = $1)
                 FOR NO KEY UPDATE",
            )
            .bind(volume)
            .execute(&mut *tx)
            .await?;
        }
        let Some(entry): Option<CacheEntry> =
            sqlx::query_as("SELECT * FROM cache_entries WHERE volume = $1 AND state = 'building'")
                .bind(volume)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(Published::Gone);
        };
        let scope = CacheScope {
            user: entry.user_id,
            team: entry.team_id,
        };
        let taken = find_ready(&mut *tx, &entry.host, scope, &entry.key)
            .await?
            .is_some();
        let state = if taken {
            CacheState::Removing
        } else {
            CacheState::Ready
        };
        sqlx::query(
            "UPDATE cache_entries SET state = $1, size_bytes = $2, last_used_at = $3
             WHERE id = $4",
        )
        .bind(state)
        .bind(size_bytes as i64)
        .bind(now)
        .bind(&entry.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if taken {
            Published::Duplicate
        } else {
            Published::Ready
        }
    }))
}

/// Gives up the entries a job was building and did not publish (its install failed, was
/// cancelled, or the job ended otherwise): they become `removing`. Returns how many.
pub async fn abandon(ex: impl Into<Exec<'_>>, epoch: i64, job: JobId) -> Result<u64, DbError> {
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let done = sqlx::query(
            "UPDATE cache_entries SET state = 'removing' WHERE job_id = $1 AND state = 'building'",
        )
        .bind(job)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done.rows_affected()
    }))
}

/// Entries that are `building` for a job that has ended (a controller stopped between the two):
/// they become `removing`. Returns how many.
pub async fn abandon_ended(ex: impl Into<Exec<'_>>) -> Result<u64, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query(
        "UPDATE cache_entries SET state = 'removing'
         WHERE state = 'building' AND NOT EXISTS (
             SELECT 1 FROM jobs j WHERE j.id = cache_entries.job_id
               AND j.status IN ('queued', 'running'))",
    )
    .execute(e)
    .await?
    .rows_affected()))
}

/// Every entry, or one user's, most recently used first.
pub async fn list(
    ex: impl Into<Exec<'_>>,
    user: Option<UserId>,
) -> Result<Vec<CacheEntry>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM cache_entries WHERE ($1 IS NULL OR user_id = $1)
         ORDER BY last_used_at DESC, id",
    )
    .bind(user)
    .fetch_all(e)
    .await?))
}

/// Bytes of the published entries (the cache's size).
pub async fn ready_bytes(ex: impl Into<Exec<'_>>) -> Result<i64, DbError> {
    // PostgreSQL's SUM of BIGINT is NUMERIC: cast back.
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM cache_entries
         WHERE state = 'ready'",
    )
    .fetch_one(e)
    .await?))
}

/// Marks published entries for removal (`ci-admin cache prune`): all of them, or one user's;
/// only those unused for `unused_for` when given. The controller removes their volumes.
/// Returns how many were marked.
pub async fn prune(
    ex: impl Into<Exec<'_>>,
    user: Option<UserId>,
    unused_for: Option<Duration>,
) -> Result<u64, DbError> {
    // A duration too long to subtract from now: nothing was unused that long.
    let before = match unused_for {
        None => None,
        Some(d) => match chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| super::now().checked_sub_signed(d))
        {
            Some(before) => Some(before),
            None => return Ok(0),
        },
    };
    Ok(on_exec!(ex, |e| sqlx::query(
        "UPDATE cache_entries SET state = 'removing'
         WHERE state = 'ready' AND ($1 IS NULL OR user_id = $1)
           AND ($2 IS NULL OR last_used_at < $2)",
    )
    .bind(user)
    .bind(before)
    .execute(e)
    .await?
    .rows_affected()))
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
///
/// The published entries are read `FOR UPDATE` on PostgreSQL (SQLite's write transaction
/// already excludes other writers), so that a hit in between waits instead of being lost: an
/// entry chosen by a job is not evicted on what was its last use before.
pub async fn evict(
    ex: impl Into<Exec<'_>>,
    bounds: &CacheBounds,
) -> Result<Vec<CacheEntry>, DbError> {
    // SQLite has no FOR UPDATE (nor needs it, see above).
    const SQLITE: &str =
        "SELECT * FROM cache_entries WHERE state = 'ready' ORDER BY last_used_at, id";
    const POSTGRES: &str =
        "SELECT * FROM cache_entries WHERE state = 'ready' ORDER BY last_used_at, id FOR UPDATE";
    let ex = ex.into();
    let sql = if ex.is_postgres() { POSTGRES } else { SQLITE };
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        // Least recently used first.
        let ready: Vec<CacheEntry> = sqlx::query_as(sql).fetch_all(&mut *tx).await?;
        let evicted = over_bounds(&ready, bounds, super::now());
        for entry in &evicted {
            sqlx::query("UPDATE cache_entries SET state = 'removing' WHERE id = $1")
                .bind(&entry.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        evicted
    }))
}

/// Of the published entries `ready` (least recently used first), those that break `bounds` at
/// `now` (see [`evict`]).
fn over_bounds(ready: &[CacheEntry], bounds: &CacheBounds, now: DateTime<Utc>) -> Vec<CacheEntry> {
    let too_old = |e: &CacheEntry| {
        bounds
            .max_age
            .is_some_and(|age| (now - e.last_used_at).to_std().unwrap_or_default() > age)
    };
    let mut keep: Vec<&CacheEntry> = Vec::new();
    let mut evicted: Vec<CacheEntry> = Vec::new();
    for entry in ready {
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
    evicted
}

/// Entries on the Docker host `host` to remove whose volumes no running job mounts (a job's
/// steps name the volumes they mount) and that no job chose in the last `grace` (a job that
/// just chose an entry has not stored its plan yet; an entry no job ever chose needs no grace).
pub async fn removable(
    ex: impl Into<Exec<'_>>,
    host: &str,
    grace: Duration,
) -> Result<Vec<CacheEntry>, DbError> {
    // "Contains" is SQLite's instr and PostgreSQL's strpos (neither has the other's).
    const SQLITE: &str = "SELECT * FROM cache_entries c
         WHERE host = $2 AND state = 'removing' AND (hits = 0 OR last_used_at <= $1)
           AND NOT EXISTS (
             SELECT 1 FROM job_steps s JOIN jobs j ON j.id = s.job_id
             WHERE j.status = 'running' AND instr(s.spec, c.volume) > 0)
         ORDER BY last_used_at";
    const POSTGRES: &str = "SELECT * FROM cache_entries c
         WHERE host = $2 AND state = 'removing' AND (hits = 0 OR last_used_at <= $1)
           AND NOT EXISTS (
             SELECT 1 FROM job_steps s JOIN jobs j ON j.id = s.job_id
             WHERE j.status = 'running' AND strpos(s.spec, c.volume) > 0)
         ORDER BY last_used_at";
    let before = super::now() - chrono::Duration::from_std(grace).unwrap_or_default();
    let ex = ex.into();
    let sql = if ex.is_postgres() { POSTGRES } else { SQLITE };
    Ok(on_exec!(ex, |e| sqlx::query_as(sql)
        .bind(before)
        .bind(host)
        .fetch_all(e)
        .await?))
}

/// Forgets an entry whose volume was removed.
pub async fn forget(ex: impl Into<Exec<'_>>, id: &str) -> Result<(), DbError> {
    on_exec!(ex, |e| sqlx::query(
        "DELETE FROM cache_entries WHERE id = $1"
    )
    .bind(id)
    .execute(e)
    .await
    .map(drop)?);
    Ok(())
}

/// Whether a volume is one the cache knows (any state): the controller removes cache volumes
/// that are not.
pub async fn knows_volume(ex: impl Into<Exec<'_>>, volume: &str) -> Result<bool, DbError> {
    let count: i64 = on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM cache_entries WHERE volume = $1"
    )
    .bind(volume)
    .fetch_one(e)
    .await?);
    Ok(count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{jobs, users};
    use crate::testing::{backends, job_with_lease, take_over_lease, Backend};

    /// A job on `db` with the lease epoch and the job's user.
    async fn job(db: &Backend) -> (JobId, i64, UserId) {
        let (job, epoch) = job_with_lease(db).await;
        let user = jobs::get(db.exec(), job).await.unwrap().unwrap().user_id;
        (job, epoch, user)
    }

    /// Sets the job's status with plain SQL (claiming and ending jobs are SQLite's alone).
    async fn set_status(db: &Backend, job: JobId, status: &str) {
        on_exec!(db.exec(), |e| sqlx::query(
            "UPDATE jobs SET status = $1 WHERE id = $2"
        )
        .bind(status)
        .bind(job)
        .execute(e)
        .await
        .map(drop)
        .unwrap());
    }

    fn volumes(entries: Vec<CacheEntry>) -> Vec<String> {
        entries.into_iter().map(|e| e.volume).collect()
    }

    #[tokio::test]
    async fn each_docker_host_has_its_own_entries_and_removes_only_its_volumes_on_every_backend() {
        for db in backends().await {
            let (job, epoch, ada) = job(&db).await;
            for (host, volume) in [("a", "vol-on-a"), ("b", "vol-on-b")] {
                begin(db.exec(), epoch, host, ada.into(), "k", job, volume)
                    .await
                    .unwrap();
                assert_eq!(
                    publish(db.exec(), epoch, volume, 1).await.unwrap(),
                    Published::Ready,
                    "one published entry per host for the same user and key ({db:?})"
                );
            }
            for host in ["a", "b"] {
                let found = find_ready(db.exec(), host, ada.into(), "k")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(found.volume, format!("vol-on-{host}"), "{db:?}");
            }
            assert_eq!(
                find_ready(db.exec(), "c", ada.into(), "k").await.unwrap(),
                None
            );
            prune(db.exec(), None, None).await.unwrap();
            assert_eq!(
                volumes(removable(db.exec(), "b", Duration::ZERO).await.unwrap()),
                ["vol-on-b"],
                "a host's sweep sees only its own volumes ({db:?})"
            );
        }
    }

    #[tokio::test]
    async fn an_entry_is_served_only_once_published_and_only_to_its_owner_on_every_backend() {
        for db in backends().await {
            let (job, epoch, ada) = job(&db).await;
            let other = users::create(db.exec(), "Bob", &format!("bob-{job}@example.com"))
                .await
                .unwrap();
            let entry = begin(db.exec(), epoch, "local", ada.into(), "k1", job, "vol-a")
                .await
                .unwrap();
            assert_eq!(
                (
                    entry.state,
                    entry.user_id,
                    entry.key.as_str(),
                    entry.host.as_str(),
                    entry.job_id,
                    entry.size_bytes,
                    entry.hits
                ),
                (CacheState::Building, ada, "k1", "local", Some(job), 0, 0),
                "{db:?}"
            );
            assert_eq!(entry.created_at, entry.last_used_at, "{db:?}");
            assert_eq!(
                list(db.exec(), None).await.unwrap(),
                std::slice::from_ref(&entry),
                "{db:?}"
            );
            assert_eq!(
                find_ready(db.exec(), "local", ada.into(), "k1")
                    .await
                    .unwrap(),
                None,
                "{db:?}"
            );
            assert_eq!(
                publish(db.exec(), epoch, "vol-a", 5_000_000_000)
                    .await
                    .unwrap(),
                Published::Ready,
                "{db:?}"
            );
            let ready = find_ready(db.exec(), "local", ada.into(), "k1")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (ready.volume.as_str(), ready.size_bytes, ready.state),
                ("vol-a", 5_000_000_000, CacheState::Ready),
                "{db:?}"
            );
            assert_eq!(
                ready_bytes(db.exec()).await.unwrap(),
                5_000_000_000,
                "{db:?}"
            );
            assert_eq!(
                find_ready(db.exec(), "local", other.id.into(), "k1")
                    .await
                    .unwrap(),
                None,
                "{db:?}"
            );
            assert!(hit(db.exec(), epoch, &ready.id).await.unwrap(), "{db:?}");
            let used = list(db.exec(), None).await.unwrap();
            assert_eq!(used[0].hits, 1, "{db:?}");
            assert!(used[0].last_used_at >= ready.last_used_at, "{db:?}");

            // A second build of the same key loses the race and is to be removed.
            begin(db.exec(), epoch, "local", ada.into(), "k1", job, "vol-b")
                .await
                .unwrap();
            assert_eq!(
                publish(db.exec(), epoch, "vol-b", 1).await.unwrap(),
                Published::Duplicate,
                "{db:?}"
            );
            assert_eq!(
                publish(db.exec(), epoch, "vol-b", 1).await.unwrap(),
                Published::Gone,
                "{db:?}"
            );
            assert_eq!(
                ready_bytes(db.exec()).await.unwrap(),
                5_000_000_000,
                "{db:?}"
            );
            // A failed build is abandoned, and nothing in use is removable.
            begin(db.exec(), epoch, "local", ada.into(), "k2", job, "vol-c")
                .await
                .unwrap();
            assert_eq!(abandon(db.exec(), epoch, job).await.unwrap(), 1, "{db:?}");
            assert_eq!(abandon(db.exec(), epoch, job).await.unwrap(), 0, "{db:?}");
            let removable_now =
                volumes(removable(db.exec(), "local", Duration::ZERO).await.unwrap());
            assert_eq!(removable_now, ["vol-b", "vol-c"], "{db:?}");
            assert_eq!(list(db.exec(), Some(other.id)).await.unwrap(), [], "{db:?}");
            assert_eq!(list(db.exec(), Some(ada)).await.unwrap().len(), 3, "{db:?}");
            let all = list(db.exec(), None).await.unwrap();
            let c = all.iter().find(|e| e.volume == "vol-c").unwrap();
            forget(db.exec(), &c.id).await.unwrap();
            assert!(knows_volume(db.exec(), "vol-a").await.unwrap(), "{db:?}");
            assert!(!knows_volume(db.exec(), "vol-c").await.unwrap(), "{db:?}");
            // Another controller's epoch cannot write.
            take_over_lease(&db).await;
            assert!(
                matches!(
                    begin(db.exec(), epoch, "local", ada.into(), "k3", job, "vol-d").await,
                    Err(DbError::LeaseLost(_))
                ),
                "{db:?}"
            );
            assert!(
                matches!(
                    hit(db.exec(), epoch, &ready.id).await,
                    Err(DbError::LeaseLost(_))
                ),
                "{db:?}"
            );
            assert!(
                matches!(
                    abandon(db.exec(), epoch, job).await,
                    Err(DbError::LeaseLost(_))
                ),
                "{db:?}"
            );
            assert!(!knows_volume(db.exec(), "vol-d").await.unwrap(), "{db:?}");
            let a = find_ready(db.exec(), "local", ada.into(), "k1")
                .await
                .unwrap()
                .unwrap();
            assert_eq!((a.volume.as_str(), a.hits), ("vol-a", 1), "{db:?}");
        }
    }

    #[tokio::test]
    async fn two_builds_of_one_key_published_at_once_give_one_ready_entry_on_every_backend() {
        for db in backends().await {
            let (job, epoch, ada) = job(&db).await;
            for round in 0..10 {
                let key = format!("k{round}");
                let (a, b) = (format!("a{round}"), format!("b{round}"));
                begin(db.exec(), epoch, "local", ada.into(), &key, job, &a)
                    .await
                    .unwrap();
                begin(db.exec(), epoch, "local", ada.into(), &key, job, &b)
                    .await
                    .unwrap();
                let (x, y) = tokio::join!(
                    publish(db.exec(), epoch, &a, 1),
                    publish(db.exec(), epoch, &b, 1)
                );
                let mut both = [x.unwrap(), y.unwrap()];
                both.sort_by_key(|p| *p == Published::Duplicate);
                assert_eq!(both, [Published::Ready, Published::Duplicate], "{db:?}");
            }
            assert_eq!(ready_bytes(db.exec()).await.unwrap(), 10, "{db:?}");
        }
    }

    #[tokio::test]
    async fn eviction_keeps_each_user_and_everyone_within_the_caps_least_recently_used_first_on_every_backend(
    ) {
        for db in backends().await {
            let (job, epoch, ada) = job(&db).await;
            for (i, size) in [100u64, 200, 300].into_iter().enumerate() {
                let volume = format!("v{i}");
                begin(
                    db.exec(),
                    epoch,
                    "local",
                    ada.into(),
                    &format!("k{i}"),
                    job,
                    &volume,
                )
                .await
                .unwrap();
                publish(db.exec(), epoch, &volume, size).await.unwrap();
            }
            assert_eq!(ready_bytes(db.exec()).await.unwrap(), 600, "{db:?}");
            // v0 was used last: v1 is the least recently used now.
            let v0 = list(db.exec(), None).await.unwrap();
            let v0 = v0.iter().find(|e| e.volume == "v0").unwrap();
            hit(db.exec(), epoch, &v0.id).await.unwrap();
            assert_eq!(
                volumes(list(db.exec(), None).await.unwrap()),
                ["v0", "v2", "v1"],
                "most recently used first: {db:?}"
            );
            let bounds = CacheBounds {
                max_bytes_per_user: Some(450),
                ..CacheBounds::default()
            };
            assert_eq!(
                volumes(evict(db.exec(), &bounds).await.unwrap()),
                ["v1"],
                "{db:?}"
            );
            let bounds = CacheBounds {
                max_bytes: Some(100),
                ..CacheBounds::default()
            };
            assert_eq!(
                volumes(evict(db.exec(), &bounds).await.unwrap()),
                ["v2"],
                "{db:?}"
            );
            assert_eq!(ready_bytes(db.exec()).await.unwrap(), 100, "{db:?}");
            let aged = CacheBounds {
                max_age: Some(Duration::ZERO),
                ..CacheBounds::default()
            };
            assert_eq!(evict(db.exec(), &aged).await.unwrap().len(), 1, "{db:?}");
            assert_eq!(evict(db.exec(), &aged).await.unwrap(), [], "{db:?}");
            assert_eq!(ready_bytes(db.exec()).await.unwrap(), 0, "{db:?}");
            // Pruning marks what is left; building entries of ended jobs are abandoned.
            begin(db.exec(), epoch, "local", ada.into(), "k9", job, "v9")
                .await
                .unwrap();
            assert_eq!(
                abandon_ended(db.exec()).await.unwrap(),
                0,
                "the job is queued: {db:?}"
            );
            publish(db.exec(), epoch, "v9", 1).await.unwrap();
            assert_eq!(
                prune(db.exec(), Some(ada), Some(Duration::from_secs(3600)))
                    .await
                    .unwrap(),
                0,
                "used just now: {db:?}"
            );
            assert_eq!(
                prune(db.exec(), None, Some(Duration::MAX)).await.unwrap(),
                0,
                "{db:?}"
            );
            assert_eq!(
                prune(db.exec(), Some(ada), None).await.unwrap(),
                1,
                "{db:?}"
            );
            assert_eq!(prune(db.exec(), None, None).await.unwrap(), 0, "{db:?}");
            // A pruned entry is not served any more, and one chosen just before waits out the
            // grace.
            let v9 = list(db.exec(), None).await.unwrap();
            let v9 = v9.iter().find(|e| e.volume == "v9").unwrap();
            assert!(!hit(db.exec(), epoch, &v9.id).await.unwrap(), "{db:?}");
            let waiting = volumes(
                removable(db.exec(), "local", Duration::from_secs(60))
                    .await
                    .unwrap(),
            );
            assert!(!waiting.contains(&"v0".to_owned()), "{db:?}: {waiting:?}");
            assert!(
                waiting.contains(&"v9".to_owned()),
                "never chosen: {db:?}: {waiting:?}"
            );

            // A building entry of a job that ended is abandoned.
            begin(db.exec(), epoch, "local", ada.into(), "k10", job, "v10")
                .await
                .unwrap();
            set_status(&db, job, "failed").await;
            assert_eq!(abandon_ended(db.exec()).await.unwrap(), 1, "{db:?}");
            assert_eq!(
                publish(db.exec(), epoch, "v10", 1).await.unwrap(),
                Published::Gone,
                "{db:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_volume_a_running_job_mounts_is_not_removable_on_every_backend() {
        for db in backends().await {
            let (job, epoch, ada) = job(&db).await;
            begin(
                db.exec(),
                epoch,
                "local",
                ada.into(),
                "k",
                job,
                "ci-cache-mounted",
            )
            .await
            .unwrap();
            begin(
                db.exec(),
                epoch,
                "local",
                ada.into(),
                "k2",
                job,
                "ci-cache-free",
            )
            .await
            .unwrap();
            abandon(db.exec(), epoch, job).await.unwrap();
            on_exec!(db.exec(), |e| sqlx::query(
                "INSERT INTO job_steps (job_id, position, name, state, spec)
                 VALUES ($1, 1, 'test', 'running', $2)"
            )
            .bind(job)
            .bind(r#"{"name": "test", "mounts": ["ci-cache-mounted:/cache"]}"#)
            .execute(e)
            .await
            .map(drop)
            .unwrap());
            set_status(&db, job, "running").await;
            let now = volumes(removable(db.exec(), "local", Duration::ZERO).await.unwrap());
            assert_eq!(now, ["ci-cache-free"], "{db:?}");
            set_status(&db, job, "passed").await;
            let mut now = volumes(removable(db.exec(), "local", Duration::ZERO).await.unwrap());
            now.sort();
            assert_eq!(now, ["ci-cache-free", "ci-cache-mounted"], "{db:?}");
        }
    }
}
