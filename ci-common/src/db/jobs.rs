//! The `jobs` table: creation with its upload, the queue, cancellation and the end of a job.
//! Every transition writes its event in the same transaction.

use chrono::{DateTime, Utc};

use super::events::{self, NewEvent};
use super::{lease, on_exec, steps, uploads, webhooks, BeginWrite as _, DbError, Exec};
use crate::api::{JobView, Outcome};
use crate::project::{FlakyRule, JobOptions};
use crate::results::TestCounts;
use crate::webhooks::WebhookEvent;
use crate::{JobId, JobStatus, TeamId, UserId};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Job {
    /// Queue order (FIFO) and listing order.
    pub num: i64,
    pub id: JobId,
    pub user_id: UserId,
    pub task: String,
    pub status: JobStatus,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub attempt: i64,
    pub image: Option<String>,
    /// The step whose container a running job is in.
    pub step: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub controller_epoch: Option<i64>,
    pub upload_bytes: i64,
    pub log_lines: i64,
    pub log_bytes: i64,
    pub dropped_lines: i64,
    pub dropped_bytes: i64,
    pub log_cursor: Option<String>,
    pub log_cursor_skip: i64,
    /// Extra pytest arguments (`ci submit test -- ARGS`), a JSON array of strings.
    pub args: String,
    /// Counts of the job's tests per outcome ([`TestCounts`] as JSON), once collected.
    pub test_counts: Option<String>,
    /// How many times the job runs its failed tests again.
    pub retries: i64,
    /// Whether a flaky test fails the job.
    pub fail_on_flaky: bool,
    /// The project the job belongs to (its tests' history is kept per project).
    pub project: Option<String>,
    /// Whether the job uses and fills the dependency cache (`ci submit --no-cache` turns it off).
    pub use_cache: bool,
    /// Jobs of the same user with the same key run one at a time (a task's `concurrency = 1`:
    /// see [`crate::tasks::concurrency_key`]).
    pub concurrency_key: Option<String>,
    /// The SHA-256 of the job's source (see [`uploads`]).
    pub source_sha256: Option<String>,
    /// The Docker host it runs (or ran) on: its name in the controller's host list, set when
    /// it is claimed.
    pub host: Option<String>,
    /// The git remote of a job from git (`ci submit --git`), with the ref asked for and the
    /// commit fetched (once its fetch step has passed).
    pub git_url: Option<String>,
    pub git_ref: Option<String>,
    pub git_commit: Option<String>,
    /// The team the job was submitted to (`ci submit --team`): every member sees it.
    pub team_id: Option<TeamId>,
    /// The team's name, filled in by the queries that show jobs to users ([`get_for_user`],
    /// [`list_filtered`]).
    #[sqlx(default)]
    pub team: Option<String>,
    /// The name of the user who submitted the job, filled in with `team`.
    #[sqlx(default)]
    pub submitted_by: Option<String>,
}

impl Job {
    /// The extra pytest arguments the job was submitted with.
    pub fn args(&self) -> Vec<String> {
        serde_json::from_str(&self.args).unwrap_or_default()
    }

    /// The job's git source, for a job from git.
    pub fn git(&self) -> Option<crate::git::GitView> {
        Some(crate::git::GitView {
            url: self.git_url.clone()?,
            git_ref: self
                .git_ref
                .clone()
                .unwrap_or_else(|| crate::git::DEFAULT_REF.to_owned()),
            commit: self.git_commit.clone(),
        })
    }

    /// Whether the job still has to fetch its project with git before anything else runs.
    pub fn needs_fetch(&self) -> bool {
        self.git_url.is_some() && self.source_sha256.is_none()
    }

    pub fn view(&self) -> JobView {
        JobView {
            job_id: self.id,
            status: self.status,
            success: self.status.success(),
            task: self.task.clone(),
            args: self.args(),
            project: self.project.clone(),
            image: self.image.clone(),
            host: self.host.clone(),
            git: self.git(),
            team: self.team.clone(),
            submitted_by: self.team.as_ref().and(self.submitted_by.clone()),
            reason: self.reason.clone(),
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            created_at: self.created_at,
            start_time: self.started_at,
            end_time: self.finished_at,
            cancel_requested: self.cancel_requested_at.is_some(),
            log_lines: self.log_lines,
            dropped_lines: self.dropped_lines,
            last_seq: None,
            steps: None,
            controller: None,
            tests: self
                .test_counts
                .as_deref()
                .and_then(|json| serde_json::from_str::<TestCounts>(json).ok()),
        }
    }
}

/// What a new job is made of.
#[derive(Clone, Copy, Debug)]
pub struct NewJob<'a> {
    pub user_id: UserId,
    pub task: &'a str,
    /// The image the job asked for (checked against the operator's policy); `None` runs it in the
    /// controller's default image.
    pub image: Option<&'a str>,
    /// Extra pytest arguments.
    pub args: &'a [String],
    /// Re-runs of failed tests, whether a flaky test fails the job, and the project's name.
    pub options: &'a JobOptions,
    /// Jobs of the same user with the same key run one at a time.
    pub concurrency_key: Option<&'a str>,
    /// The project: the validated zip archive, or where to fetch it with git.
    pub source: NewSource<'a>,
    /// The team it is submitted to (the submitter must be a member: see
    /// [`super::teams::membership`]).
    pub team_id: Option<TeamId>,
}

/// Where a new job's project comes from.
#[derive(Clone, Copy, Debug)]
pub enum NewSource<'a> {
    /// The validated zip archive, stored with the job.
    Archive(&'a [u8]),
    /// A git remote and ref (checked against the operator's rules): the job's first step
    /// fetches it, and [`record_fetched`] stores the tree as its source.
    Git { url: &'a str, git_ref: &'a str },
}

/// Creates a queued job of `task` with its uploaded archive, no image choice and no extra
/// arguments (see [`create_job`]).
pub async fn create(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    task: &str,
    archive: &[u8],
) -> Result<Job, DbError> {
    create_job(
        ex,
        &NewJob {
            user_id,
            task,
            image: None,
            args: &[],
            options: &JobOptions::default(),
            concurrency_key: None,
            source: NewSource::Archive(archive),
            team_id: None,
        },
    )
    .await
}

/// Creates a queued job together with its uploaded archive, in one transaction: when this
/// returns, the job and its files are durable and any replica or the controller can read them.
pub async fn create_job(ex: impl Into<Exec<'_>>, new: &NewJob<'_>) -> Result<Job, DbError> {
    let now = super::now();
    let (archive, git_url, git_ref) = match new.source {
        NewSource::Archive(archive) => (Some(archive), None, None),
        NewSource::Git { url, git_ref } => (None, Some(url), Some(git_ref)),
    };
    let args = serde_json::to_string(new.args).expect("strings serialize");
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        let source = match archive {
            Some(archive) => Some(uploads::store(&mut *tx, archive, now).await?),
            None => None,
        };
        let job: Job = sqlx::query_as(
            "INSERT INTO jobs (id, user_id, task, status, created_at, upload_bytes, image, args,
                               retries, fail_on_flaky, project, use_cache, concurrency_key,
                               source_sha256, git_url, git_ref, team_id)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                     $16)
             RETURNING *",
        )
        .bind(JobId::new())
        .bind(new.user_id)
        .bind(new.task)
        .bind(now)
        .bind(archive.map_or(0, |a| a.len() as i64))
        .bind(new.image)
        .bind(&args)
        .bind(i64::from(new.options.retries))
        .bind(new.options.flaky == FlakyRule::Fail)
        .bind(new.options.project.as_deref())
        .bind(!new.options.no_cache)
        .bind(new.concurrency_key)
        .bind(source)
        .bind(git_url)
        .bind(git_ref)
        .bind(new.team_id)
        .fetch_one(&mut *tx)
        .await?;
        super::changes::notify(&mut *tx).await?;
        tx.commit().await?;
        job
    }))
}

/// Why a job cannot be run again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such job")]
    NotFound,
    #[error("the source of job {0} is no longer kept")]
    SourceExpired(JobId),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Queues a new job of `user` that runs job `id` (one the user sees: theirs or their team's)
/// again: the same source, task, arguments, image, options and team, submitted by `user`. The source must still be kept (see [`uploads::expire`]).
///
/// # Errors
///
/// [`RetryError::NotFound`] for a job that is not the user's, [`RetryError::SourceExpired`] when
/// its source is gone.
pub async fn retry(ex: impl Into<Exec<'_>>, user_id: UserId, id: JobId) -> Result<Job, RetryError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await.map_err(DbError::from)?;
        let Some(old) = get_for_user(&mut *tx, id, user_id).await? else {
            return Err(RetryError::NotFound);
        };
        let kept = match &old.source_sha256 {
            Some(sha) => uploads::touch(&mut *tx, sha, now).await?,
            // A job from git that never fetched fetches again.
            None => old.git_url.is_some(),
        };
        if !kept {
            return Err(RetryError::SourceExpired(id));
        }
        let job: Job = sqlx::query_as(
            "INSERT INTO jobs (id, user_id, task, status, created_at, upload_bytes, image, args,
                               retries, fail_on_flaky, project, use_cache, concurrency_key,
                               source_sha256, git_url, git_ref, git_commit, team_id)
             SELECT $1, $4, task, 'queued', $2, upload_bytes, image, args, retries,
                    fail_on_flaky, project, use_cache, concurrency_key, source_sha256,
                    git_url, git_ref, CASE WHEN source_sha256 IS NULL THEN NULL ELSE git_commit END,
                    team_id
             FROM jobs WHERE id = $3 RETURNING *",
        )
        .bind(JobId::new())
        .bind(now)
        .bind(id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::from)?;
        super::changes::notify(&mut *tx).await?;
        tx.commit().await.map_err(DbError::from)?;
        job
    }))
}

/// Stores the tree a job's fetch step checked out (`archive`, a zip of the project without
/// `.git`) as the job's source, with the `commit` it is at, for the controller holding the lease
/// `epoch`. Returns the job as it is now.
///
/// # Errors
///
/// [`DbError::LeaseLost`] for a controller that lost the lease (nothing is written).
pub async fn record_fetched(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    epoch: i64,
    archive: &[u8],
    commit: &str,
) -> Result<Job, DbError> {
    let now = super::now();
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let source = uploads::store(&mut *tx, archive, now).await?;
        let job: Job = sqlx::query_as(
            "UPDATE jobs SET source_sha256 = $1, upload_bytes = $2, git_commit = $3
             WHERE id = $4 RETURNING *",
        )
        .bind(source)
        .bind(archive.len() as i64)
        .bind(commit)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        super::changes::notify(&mut *tx).await?;
        tx.commit().await?;
        job
    }))
}

pub async fn get(ex: impl Into<Exec<'_>>, id: JobId) -> Result<Option<Job>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM jobs WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(e)
    .await?))
}

/// The one rule of who sees a job, as an SQL condition on `jobs` for the user in parameter
/// `$n`: its submitter, and every member of the team it was submitted to. Membership is read in
/// the same statement, so a member removed from a team loses access with the next request.
fn visible_to(n: u8) -> String {
    format!(
        "(jobs.user_id = ${n} OR jobs.team_id IN
             (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = ${n}))"
    )
}

/// The columns that show a job to users: the job's own, its team's name and its submitter's.
const SHOWN: &str = "jobs.*,
     (SELECT t.name FROM teams t WHERE t.id = jobs.team_id) AS team,
     (SELECT u.name FROM users u WHERE u.id = jobs.user_id) AS submitted_by";

/// The job if `user_id` may see it ([`visible_to`]: theirs, or their team's); any other job is
/// indistinguishable from no job.
pub async fn get_for_user(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    user_id: UserId,
) -> Result<Option<Job>, DbError> {
    let sql = format!(
        "SELECT {SHOWN} FROM jobs WHERE id = $1 AND {}",
        visible_to(2)
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(e)
        .await?))
}

/// A user's latest job of `task` (in `project` when given), if any: one they submitted, not
/// their team's.
pub async fn latest_of_task(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    task: &str,
    project: Option<&str>,
) -> Result<Option<Job>, DbError> {
    let sql = format!(
        "SELECT {SHOWN} FROM jobs WHERE user_id = $1 AND task = $2
             AND ($3 IS NULL OR project = $3)
         ORDER BY num DESC LIMIT 1"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(user_id)
        .bind(task)
        .bind(project)
        .fetch_optional(e)
        .await?))
}

/// A user's jobs, newest first; `before` continues a listing after that job.
pub async fn list_for_user(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    limit: i64,
    before: Option<JobId>,
) -> Result<Vec<Job>, DbError> {
    list_filtered(ex, user_id, limit, before, &JobFilter::default()).await
}

/// Which of a user's jobs a listing shows: all by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub status: Option<JobStatus>,
    /// Only jobs of this task.
    pub task: Option<String>,
    /// Only jobs of this team.
    pub team: Option<TeamId>,
}

/// The jobs `user_id` sees ([`visible_to`]) that pass `filter`, newest first, at most `limit`,
/// continuing after `before` (the last job of the previous page).
pub async fn list_filtered(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    limit: i64,
    before: Option<JobId>,
    filter: &JobFilter,
) -> Result<Vec<Job>, DbError> {
    // Two branches, each walking its own index newest first (the user's jobs; their teams'
    // jobs that others submitted), merged by `num`: the same rows as `visible_to`.
    let filters = "($2 IS NULL OR jobs.num < (SELECT b.num FROM jobs b WHERE b.id = $2))
           AND ($4 IS NULL OR jobs.status = $4)
           AND ($5 IS NULL OR jobs.task = $5)
           AND ($6 IS NULL OR jobs.team_id = $6)";
    let sql = format!(
        "SELECT {SHOWN} FROM jobs WHERE jobs.user_id = $1 AND {filters}
         UNION ALL
         SELECT {SHOWN} FROM jobs
         WHERE jobs.team_id IN (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = $1)
           AND jobs.user_id <> $1 AND {filters}
         ORDER BY num DESC LIMIT $3"
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(user_id)
        .bind(before)
        .bind(limit)
        .bind(filter.status)
        .bind(filter.task.as_deref())
        .bind(filter.team)
        .fetch_all(e)
        .await?))
}

/// Asks for a job to be cancelled. A queued job is cancelled at once (no controller owns it
/// yet); a running one gets `cancel_requested_at` and the controller stops it. Returns the job
/// as it is afterwards, or `None` if the user has no such job.
pub async fn request_cancel(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    user_id: UserId,
) -> Result<Option<Job>, DbError> {
    let now = super::now();
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        // PostgreSQL: the job's row is locked, so that a claim or a finish waits for this
        // decision (SQLite's write transaction already holds the database).
        let Some(job) = get_for_user_locked(&mut *tx, id, user_id).await? else {
            return Ok(None);
        };
        match job.status {
            JobStatus::Queued if job.status.can_become(JobStatus::Cancelled) => {
                let outcome = Outcome::new(JobStatus::Cancelled)
                    .with_reason("cancelled by the user before it started");
                end(&mut *tx, id, &outcome, now).await?;
            }
            JobStatus::Running if job.cancel_requested_at.is_none() => {
                sqlx::query("UPDATE jobs SET cancel_requested_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => return Ok(Some(job)),
        }
        super::changes::notify(&mut *tx).await?;
        let job = get_for_user(&mut *tx, id, user_id).await?;
        tx.commit().await?;
        Ok(job)
    })
}

/// Orders the writers of one job's rows (its events, its steps) within a write transaction:
/// on SQLite the transaction already holds the database's write lock; on PostgreSQL, whose
/// writers do not exclude each other, the job's row is locked (to the end of the transaction,
/// `FOR NO KEY UPDATE`, which readers and foreign keys do not wait for), so that two writers
/// wait for each other instead of both reading the same last position.
///
/// Errors: on PostgreSQL, [`DbError::Query`] with [`sqlx::Error::RowNotFound`] when there is no
/// such job, which is what keeps events of unknown jobs out of `job_events` there (that table has
/// no foreign key on PostgreSQL; SQLite's key refuses them).
pub async fn lock_row(ex: impl Into<Exec<'_>>, job: JobId) -> Result<(), DbError> {
    let ex = ex.into();
    if ex.is_postgres() {
        on_exec!(ex, |e| sqlx::query(
            "SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE"
        )
        .bind(job)
        .fetch_one(e)
        .await
        .map(drop)?);
    }
    Ok(())
}

/// [`get_for_user`], with the row locked to the end of the transaction on PostgreSQL.
async fn get_for_user_locked(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    user_id: UserId,
) -> Result<Option<Job>, DbError> {
    let ex = ex.into();
    if !ex.is_postgres() {
        return get_for_user(ex, id, user_id).await;
    }
    let sql = format!(
        "SELECT * FROM jobs WHERE id = $1 AND {} FOR UPDATE",
        visible_to(2)
    );
    Ok(on_exec!(ex, |e| sqlx::query_as(&sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(e)
        .await?))
}

/// The states that [`JobStatus::can_become`] `next`, as an SQL list (`'queued'`), so that a
/// query selecting jobs for a transition takes the rule from the state machine.
fn states_that_can_become(next: JobStatus) -> String {
    JobStatus::ALL
        .into_iter()
        .filter(|s| s.can_become(next))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Claims the next queued job for the controller holding `epoch`, in one transaction that also
/// writes its `running` event. Fair between users: the user with the fewest running jobs goes
/// first, then the one whose last job started longest ago; FIFO within a user. A job that did
/// not ask for an image gets `default_image`. The job records `host`, the Docker host the
/// controller places it on.
pub async fn claim_next(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    default_image: &str,
    host: &str,
) -> Result<Option<Job>, DbError> {
    claim_next_within(ex, epoch, default_image, host, 0).await
}

/// [`claim_next`], passing over the users who already have `max_running_per_user` running jobs
/// (the operator's `--max-running-per-user`; 0: no limit).
pub async fn claim_next_within(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    default_image: &str,
    host: &str,
    max_running_per_user: u32,
) -> Result<Option<Job>, DbError> {
    let ex = ex.into();
    let sql = claim_sql(ex.is_postgres());
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let job: Option<Job> = sqlx::query_as(&sql)
            .bind(super::now())
            .bind(epoch)
            .bind(default_image)
            .bind(host)
            .bind(i64::from(max_running_per_user))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(job) = &job {
            events::append(
                &mut *tx,
                job.id,
                &[NewEvent::status(JobStatus::Running, None)],
            )
            .await?;
            webhooks::enqueue(&mut *tx, job, WebhookEvent::JobStarted, super::now()).await?;
            super::changes::notify(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(job)
    })
}

/// The one statement of [`claim_next`]: `$1` now, `$2` the epoch, `$3` the default image, `$4`
/// the host, `$5` the most running jobs a user may have (0: no limit).
///
/// Both backends choose the same job: among each user's first claimable job (FIFO within a
/// user, skipping a job whose concurrency key has a job running), the one of the user with the
/// fewest running jobs, then of the user whose last job started longest ago (never: first),
/// then the oldest. On SQLite the write transaction holds the database, so a GROUP BY picks
/// each user's first job. On PostgreSQL the candidate row is locked `FOR UPDATE SKIP LOCKED`
/// (a row another claim holds is passed over, not waited for), which PostgreSQL refuses with
/// GROUP BY: each user's first job is found by a correlated `MIN` instead.
fn claim_sql(postgres: bool) -> String {
    // The states a job may be claimed from are the lifecycle's, not this query's.
    let claimable = states_that_can_become(JobStatus::Running);
    let waiting = |q: &str| {
        format!(
            "{q}.status IN ({claimable}) AND {q}.cancel_requested_at IS NULL
               -- A job whose task runs one at a time waits while another of its key runs.
               AND NOT ({q}.concurrency_key IS NOT NULL AND EXISTS (
                   SELECT 1 FROM jobs c WHERE c.user_id = {q}.user_id AND c.status = 'running'
                     AND c.concurrency_key = {q}.concurrency_key))
               -- A user at the operator's limit of running jobs waits.
               AND ($5 = 0 OR (SELECT COUNT(*) FROM jobs m
                               WHERE m.user_id = {q}.user_id AND m.status = 'running') < $5)"
        )
    };
    let fairness =
        "(SELECT COUNT(*) FROM jobs r WHERE r.user_id = q.user_id AND r.status = 'running'),
                 (SELECT MAX(s.started_at) FROM jobs s WHERE s.user_id = q.user_id) NULLS FIRST";
    let update = "UPDATE jobs
         SET status = 'running', started_at = $1, controller_epoch = $2, image = COALESCE(image, $3),
             attempt = attempt + 1, host = $4";
    if postgres {
        format!(
            "{update}
         WHERE status IN ({claimable}) AND id = (
             SELECT q.id FROM jobs q
             WHERE {waiting_q} AND q.num = (
                 SELECT MIN(f.num) FROM jobs f WHERE f.user_id = q.user_id AND {waiting_f})
             ORDER BY {fairness}, q.num
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING *",
            waiting_q = waiting("q"),
            waiting_f = waiting("f"),
        )
    } else {
        format!(
            "{update}
         WHERE status IN ({claimable}) AND num = (
             SELECT MIN(q.num) AS first FROM jobs q
             WHERE {waiting_q}
             GROUP BY q.user_id
             ORDER BY {fairness}, first
             LIMIT 1)
         RETURNING *",
            waiting_q = waiting("q"),
        )
    }
}

/// What one batch of log lines adds to a job's counters, and where its log now ends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogProgress {
    pub lines: i64,
    pub bytes: i64,
    pub dropped_lines: i64,
    pub dropped_bytes: i64,
    /// Docker timestamp of the last line consumed, and how many consumed lines carry it.
    pub cursor: Option<(String, i64)>,
}

/// Adds a batch's counters to the job (inside the batch's transaction).
pub async fn record_log_progress(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    progress: &LogProgress,
) -> Result<(), DbError> {
    let (cursor, skip) = match &progress.cursor {
        Some((cursor, skip)) => (Some(cursor.as_str()), *skip),
        None => (None, 0),
    };
    on_exec!(ex, |e| sqlx::query(
        "UPDATE jobs SET log_lines = log_lines + $1, log_bytes = log_bytes + $2,
             dropped_lines = dropped_lines + $3, dropped_bytes = dropped_bytes + $4,
             log_cursor = COALESCE($5, log_cursor),
             log_cursor_skip = CASE WHEN $5 IS NULL THEN log_cursor_skip ELSE $6 END
         WHERE id = $7",
    )
    .bind(progress.lines)
    .bind(progress.bytes)
    .bind(progress.dropped_lines)
    .bind(progress.dropped_bytes)
    .bind(cursor)
    .bind(skip)
    .bind(id)
    .execute(e)
    .await
    .map(drop)?);
    Ok(())
}

/// Ends a running job: sets its terminal state, writes its `status` and `complete` events and
/// deletes its upload, in one transaction. With `epoch`, refuses if that controller lost its
/// lease. Returns false (and changes nothing) if the job was not running.
pub async fn finish(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    epoch: Option<i64>,
    outcome: &Outcome,
) -> Result<bool, DbError> {
    // PostgreSQL: the row is locked, so that a concurrent cancel or finish waits and then sees
    // this one's state (SQLite's write transaction already holds the database).
    let ex = ex.into();
    let sql = if ex.is_postgres() {
        "SELECT status FROM jobs WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT status FROM jobs WHERE id = $1"
    };
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        if let Some(epoch) = epoch {
            lease::check(&mut *tx, epoch).await?;
        }
        let current: Option<JobStatus> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if !current.is_some_and(|status| status.can_become(outcome.status)) {
            return Ok(false);
        }
        end(&mut *tx, id, outcome, super::now()).await?;
        super::changes::notify(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Sets a terminal state with its events and its webhooks' `job.finished` deliveries, and drops
/// the upload (caller holds the transaction). Every end of a job comes here.
async fn end(
    ex: impl Into<Exec<'_>>,
    id: JobId,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    debug_assert!(outcome.status.is_terminal());
    let mut ex = ex.into();
    // PostgreSQL's text cannot hold NUL (a reason can quote a job's output).
    let mut outcome = outcome.clone();
    outcome.reason = outcome
        .reason
        .map(|r| super::stored_text(ex.is_postgres(), &r).into_owned());
    steps::close_open(ex.reborrow(), id, outcome.status, now).await?;
    // The `complete` event carries the job's test counts, if its results were collected.
    let job: Job = on_exec!(ex.reborrow(), |e| sqlx::query_as(
        "UPDATE jobs SET status = $1, reason = $2, exit_code = $3, oom_killed = $4,
             finished_at = $5, step = NULL
         WHERE id = $6
         RETURNING *",
    )
    .bind(outcome.status)
    .bind(&outcome.reason)
    .bind(outcome.exit_code)
    .bind(outcome.oom_killed)
    .bind(super::timestamp(now))
    .bind(id)
    .fetch_one(e)
    .await?);
    outcome.tests = job
        .test_counts
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    events::append(ex.reborrow(), id, &NewEvent::job_end(&outcome)).await?;
    webhooks::enqueue(ex.reborrow(), &job, WebhookEvent::JobFinished, now).await?;
    uploads::delete(ex, id).await?;
    Ok(())
}

/// Running jobs (for reconciliation and cancel checks).
pub async fn running(ex: impl Into<Exec<'_>>) -> Result<Vec<Job>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM jobs WHERE status = 'running' ORDER BY num"
    )
    .fetch_all(e)
    .await?))
}

/// Moves a running job that has not started a step to the Docker host `host` (its own stopped
/// answering before the job's first container started), for the controller holding `epoch`.
/// Returns false when the job is no longer running.
pub async fn move_to_host(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    id: JobId,
    host: &str,
) -> Result<bool, DbError> {
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let moved = sqlx::query("UPDATE jobs SET host = $1 WHERE id = $2 AND status = 'running'")
            .bind(host)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(moved == 1)
    })
}

/// Running jobs whose user asked for cancellation.
pub async fn cancel_requested(ex: impl Into<Exec<'_>>) -> Result<Vec<JobId>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT id FROM jobs WHERE status = 'running' AND cancel_requested_at IS NOT NULL",
    )
    .fetch_all(e)
    .await?))
}

/// How many jobs are in each state.
pub async fn count_by_status(ex: impl Into<Exec<'_>>) -> Result<Vec<(JobStatus, i64)>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT status, COUNT(*) FROM jobs GROUP BY status"
    )
    .fetch_all(e)
    .await?))
}

/// How many queued jobs the user has (for the operator's `--max-queued-per-user`).
pub async fn count_queued(ex: impl Into<Exec<'_>>, user_id: UserId) -> Result<i64, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status = 'queued'"
    )
    .bind(user_id)
    .fetch_one(e)
    .await?))
}

/// Whether a job is waiting to be claimed (a cheap read, for waking the claim loop).
pub async fn any_queued(ex: impl Into<Exec<'_>>) -> Result<bool, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs
                        WHERE status = 'queued' AND cancel_requested_at IS NULL)",
    )
    .fetch_one(e)
    .await?))
}

#[cfg(test)]
mod queue_watch_tests {
    use super::*;
    use crate::db::changes::Watcher;
    use crate::db::{lease, users};
    use crate::testing::backends;

    #[tokio::test]
    async fn a_user_at_the_running_limit_waits_while_others_are_claimed_on_every_backend() {
        for backend in backends().await {
            let db = backend.db();
            let epoch = lease::acquire(&db, "test").await.unwrap().epoch;
            let ada = users::create(&db, "Ada", "ada@example.com").await.unwrap();
            let bob = users::create(&db, "Bob", "bob@example.com").await.unwrap();
            for _ in 0..3 {
                create(&db, ada.id, "test", b"zip").await.unwrap();
            }
            let claim = || claim_next_within(&db, epoch, "img", "local", 2);
            let first = claim().await.unwrap().unwrap();
            let second = claim().await.unwrap().unwrap();
            assert_eq!(
                (first.user_id, second.user_id),
                (ada.id, ada.id),
                "{backend:?}"
            );
            // Ada has 2 running: her third job waits, though nobody else's is queued.
            assert!(claim().await.unwrap().is_none(), "{backend:?}");
            let bobs = create(&db, bob.id, "test", b"zip").await.unwrap();
            assert_eq!(claim().await.unwrap().unwrap().id, bobs.id);
            // Without a limit her third is claimed.
            let third = claim_next(&db, epoch, "img", "local")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(third.user_id, ada.id);
        }
    }

    #[tokio::test]
    async fn a_queued_job_wakes_the_watcher_and_a_claim_or_cancel_clears_the_queue() {
        for backend in backends().await {
            let db = backend.db();
            let mut watcher = Watcher::open(&db, std::time::Duration::from_millis(10))
                .await
                .unwrap();
            watcher.changed().await.unwrap(); // the first call returns at once
            assert!(!any_queued(&db).await.unwrap());

            let user = users::create(&db, "Ada", "ada@example.com").await.unwrap();
            let first = create(&db, user.id, "test", b"zip").await.unwrap();
            let second = create(&db, user.id, "test", b"zip").await.unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(5), watcher.changed())
                .await
                .unwrap_or_else(|_| panic!("{backend:?}: a queued job wakes the watcher"))
                .unwrap();
            assert!(any_queued(&db).await.unwrap());

            let epoch = lease::acquire(&db, "test").await.unwrap().epoch;
            let claimed = claim_next(&db, epoch, "img", "local")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.id, first.id, "{backend:?}");
            let cancelled = request_cancel(&db, second.id, user.id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(cancelled.status, JobStatus::Cancelled, "{backend:?}");
            assert!(!any_queued(&db).await.unwrap(), "{backend:?}");
            // A running job's cancel is a request; the controller's finish ends it once.
            let running = request_cancel(&db, first.id, user.id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(running.status, JobStatus::Running);
            assert!(running.cancel_requested_at.is_some());
            assert_eq!(cancel_requested(&db).await.unwrap(), [first.id]);
            let outcome = Outcome::new(JobStatus::Cancelled);
            assert!(finish(&db, first.id, Some(epoch), &outcome).await.unwrap());
            assert!(!finish(&db, first.id, Some(epoch), &outcome).await.unwrap());
            let events = super::events::list_after(&db, first.id, 0, 100)
                .await
                .unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
            assert_eq!(events.last().unwrap().kind, crate::EventKind::Complete);
            // Another user cannot cancel it, nor see it.
            let bob = users::create(&db, "Bob", "bob@example.com").await.unwrap();
            assert!(request_cancel(&db, first.id, bob.id)
                .await
                .unwrap()
                .is_none());
        }
    }
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;
    use crate::db::testing::temp_db;
    use crate::db::{lease, users};
    use crate::project::JobOptions;

    #[tokio::test]
    async fn jobs_of_a_one_at_a_time_task_wait_for_each_other_and_nothing_else_does() {
        let (_dir, pool) = temp_db().await;
        let epoch = lease::acquire(&pool, "t").await.unwrap().epoch;
        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let new = |key: Option<&'static str>| NewJob {
            user_id: ada.id,
            task: "deploy",
            image: None,
            args: &[],
            options: Box::leak(Box::new(JobOptions::default())),
            concurrency_key: key,
            source: NewSource::Archive(b"zip"),
            team_id: None,
        };
        let first = create_job(&pool, &new(Some("shop:deploy"))).await.unwrap();
        let second = create_job(&pool, &new(Some("shop:deploy"))).await.unwrap();
        let other = create_job(&pool, &new(None)).await.unwrap();
        let claimed = claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, first.id);
        let claimed = claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            claimed.id, other.id,
            "the second deploy waits; the other job does not"
        );
        assert_eq!(
            claim_next(&pool, epoch, "img", "local").await.unwrap(),
            None
        );
        finish(
            &pool,
            first.id,
            Some(epoch),
            &Outcome::new(JobStatus::Passed),
        )
        .await
        .unwrap();
        let claimed = claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, second.id, "queued, never dropped");
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::db::testing::temp_db;
    use crate::db::{lease, uploads, users};
    use std::time::Duration;

    #[tokio::test]
    async fn a_job_runs_again_from_its_kept_source_until_the_source_expires() {
        let (_dir, pool) = temp_db().await;
        let epoch = lease::acquire(&pool, "t").await.unwrap().epoch;
        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let bob = users::create(&pool, "Bob", "bob@example.com")
            .await
            .unwrap();
        let first = create(&pool, ada.id, "deploy", b"zip").await.unwrap();
        let claimed = claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        finish(
            &pool,
            claimed.id,
            Some(epoch),
            &Outcome::new(JobStatus::Failed),
        )
        .await
        .unwrap();

        let again = retry(&pool, ada.id, first.id).await.unwrap();
        assert_ne!(again.id, first.id);
        assert_eq!(
            (again.status, again.task.as_str()),
            (JobStatus::Queued, "deploy")
        );
        assert_eq!(again.source_sha256, first.source_sha256);
        assert_eq!(
            uploads::get(&pool, again.id).await.unwrap().unwrap(),
            b"zip"
        );
        assert!(matches!(
            retry(&pool, bob.id, first.id).await,
            Err(RetryError::NotFound)
        ));

        // A queued job keeps its source however old it is; an unused one goes.
        assert_eq!(uploads::expire(&pool, Duration::ZERO).await.unwrap(), 0);
        let claimed = claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        finish(
            &pool,
            claimed.id,
            Some(epoch),
            &Outcome::new(JobStatus::Passed),
        )
        .await
        .unwrap();
        assert_eq!(
            uploads::expire(&pool, Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(uploads::expire(&pool, Duration::ZERO).await.unwrap(), 1);
        assert!(matches!(
            retry(&pool, ada.id, first.id).await,
            Err(RetryError::SourceExpired(id)) if id == first.id
        ));
    }
}

#[cfg(test)]
mod both_backends_tests {
    use super::*;
    use crate::db::users;
    use crate::testing::{backends, Backend};

    #[tokio::test]
    async fn jobs_are_created_listed_filtered_and_run_again_per_user() {
        for db in backends().await {
            jobs_are_created_listed_filtered_and_run_again_per_user_on(&db).await;
        }
    }

    async fn jobs_are_created_listed_filtered_and_run_again_per_user_on(db: &Backend) {
        let ada = users::create(db.exec(), "Ada", "ada@example.com")
            .await
            .unwrap();
        let bob = users::create(db.exec(), "Bob", "bob@example.com")
            .await
            .unwrap();
        assert!(!any_queued(db.exec()).await.unwrap());
        let first = create(db.exec(), ada.id, "test", b"zip 1").await.unwrap();
        let lint = create(db.exec(), ada.id, "lint", b"zip 2").await.unwrap();
        let bobs = create(db.exec(), bob.id, "test", b"zip 1").await.unwrap();
        assert!(any_queued(db.exec()).await.unwrap());
        assert!(first.num < lint.num && lint.num < bobs.num);
        assert_eq!(first.status, JobStatus::Queued);
        assert_eq!(get(db.exec(), first.id).await.unwrap(), Some(first.clone()));
        assert_eq!(
            get_for_user(db.exec(), first.id, bob.id).await.unwrap(),
            None
        );

        let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        let all = list_for_user(db.exec(), ada.id, 10, None).await.unwrap();
        assert_eq!(ids(all), [lint.id, first.id], "newest first, Ada's only");
        let page = list_for_user(db.exec(), ada.id, 10, Some(lint.id))
            .await
            .unwrap();
        assert_eq!(ids(page), [first.id]);
        let tests = JobFilter {
            task: Some("test".into()),
            ..JobFilter::default()
        };
        let only = list_filtered(db.exec(), ada.id, 10, None, &tests)
            .await
            .unwrap();
        assert_eq!(ids(only), [first.id]);
        let passed = JobFilter {
            status: Some(JobStatus::Passed),
            ..JobFilter::default()
        };
        assert!(list_filtered(db.exec(), ada.id, 10, None, &passed)
            .await
            .unwrap()
            .is_empty());
        let latest = latest_of_task(db.exec(), ada.id, "lint", None)
            .await
            .unwrap();
        assert_eq!(latest.map(|j| j.id), Some(lint.id));
        assert_eq!(
            count_by_status(db.exec()).await.unwrap(),
            [(JobStatus::Queued, 3)]
        );

        record_log_progress(
            db.exec(),
            first.id,
            &LogProgress {
                lines: 3,
                bytes: 30,
                cursor: Some(("2026-11-30T00:00:00.1Z".into(), 2)),
                ..LogProgress::default()
            },
        )
        .await
        .unwrap();
        record_log_progress(
            db.exec(),
            first.id,
            &LogProgress {
                lines: 1,
                ..LogProgress::default()
            },
        )
        .await
        .unwrap();
        let counted = get(db.exec(), first.id).await.unwrap().unwrap();
        assert_eq!((counted.log_lines, counted.log_bytes), (4, 30));
        assert_eq!(
            counted.log_cursor.as_deref(),
            Some("2026-11-30T00:00:00.1Z")
        );
        assert_eq!(counted.log_cursor_skip, 2);

        let again = retry(db.exec(), ada.id, first.id).await.unwrap();
        assert_eq!(
            (again.task.as_str(), again.source_sha256.as_ref()),
            ("test", first.source_sha256.as_ref())
        );
        assert!(matches!(
            retry(db.exec(), bob.id, first.id).await,
            Err(RetryError::NotFound)
        ));
        assert!(running(db.exec()).await.unwrap().is_empty());
        assert!(cancel_requested(db.exec()).await.unwrap().is_empty());
    }
}
