//! The `job_steps` table: each job's planned steps with their specification and state. Every
//! transition checks [`StepState::can_become`] and writes its `step` event in the same
//! transaction.

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::events::{self, NewEvent};
use super::{lease, DbError};
use crate::api::StepView;
use crate::step::{StepSpec, StepState};
use crate::{JobId, JobStatus};

/// A stored step.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct StepRow {
    pub job_id: JobId,
    /// 1, 2, 3, ... in the order the steps run.
    pub position: i64,
    pub name: String,
    pub state: StepState,
    /// [`StepSpec`] as JSON.
    pub spec: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl StepRow {
    /// The step's specification.
    ///
    /// # Errors
    ///
    /// The stored JSON is not a specification of this version.
    pub fn spec(&self) -> Result<StepSpec, serde_json::Error> {
        serde_json::from_str(&self.spec)
    }

    pub fn view(&self) -> StepView {
        StepView {
            name: self.name.clone(),
            position: self.position,
            state: self.state,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// Stores a job's plan as pending steps, unless it already has one (a restarted controller
/// keeps the plan the job started with). Fenced by the lease epoch. Returns the job's steps.
pub async fn plan(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    specs: &[StepSpec],
) -> Result<Vec<StepRow>, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    if list(&mut *tx, job).await?.is_empty() {
        for (i, spec) in specs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_steps (job_id, position, name, state, spec) VALUES (?, ?, ?, 'pending', ?)",
            )
            .bind(job)
            .bind(i as i64 + 1)
            .bind(&spec.name)
            .bind(serde_json::to_string(spec).expect("a step spec serializes"))
            .execute(&mut *tx)
            .await?;
        }
    }
    let steps = list(&mut *tx, job).await?;
    tx.commit().await?;
    Ok(steps)
}

/// Adds `spec` as the job's next step, pending (a retry of failed tests), unless the job already
/// has a step of that name: a controller that decides the same again after a restart adds
/// nothing. Fenced by the lease epoch. Returns the job's steps.
pub async fn append(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    spec: &StepSpec,
) -> Result<Vec<StepRow>, DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    sqlx::query(
        "INSERT INTO job_steps (job_id, position, name, state, spec)
         SELECT ?1, COALESCE(MAX(position), 0) + 1, ?2, 'pending', ?3 FROM job_steps WHERE job_id = ?1
         ON CONFLICT (job_id, name) DO NOTHING",
    )
    .bind(job)
    .bind(&spec.name)
    .bind(serde_json::to_string(spec).expect("a step spec serializes"))
    .execute(&mut *tx)
    .await?;
    let steps = list(&mut *tx, job).await?;
    tx.commit().await?;
    Ok(steps)
}

/// A job's steps in order.
pub async fn list(ex: impl SqliteExecutor<'_>, job: JobId) -> Result<Vec<StepRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT * FROM job_steps WHERE job_id = ? ORDER BY position")
            .bind(job)
            .fetch_all(ex)
            .await?,
    )
}

/// Starts a pending step: it becomes `running`, the job's current step (its log position
/// starts afresh), and a `step` event says so. Fenced by the lease epoch.
pub async fn start(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    position: i64,
) -> Result<(), DbError> {
    let now = Utc::now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let Some(step) = get(&mut tx, job, position).await? else {
        return Ok(());
    };
    if !step.state.can_become(StepState::Running) {
        return Ok(());
    }
    sqlx::query(
        "UPDATE job_steps SET state = 'running', started_at = ? WHERE job_id = ? AND position = ?",
    )
    .bind(now)
    .bind(job)
    .bind(position)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET step = ?, log_cursor = NULL, log_cursor_skip = 0
         WHERE id = ? AND status = 'running'",
    )
    .bind(&step.name)
    .bind(job)
    .execute(&mut *tx)
    .await?;
    let started = StepRow {
        state: StepState::Running,
        started_at: Some(now),
        ..step
    };
    events::append(&mut tx, job, &[NewEvent::step(&started.view(), now)]).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a step with `state` (a terminal state its current one can become), its exit code and
/// reason, and writes its `step` event. Fenced by the lease epoch; a step already ended is left
/// as it is.
pub async fn finish(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    position: i64,
    state: StepState,
    exit_code: Option<i64>,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    end(&mut tx, job, position, state, exit_code, reason, Utc::now()).await?;
    tx.commit().await?;
    Ok(())
}

async fn get(
    conn: &mut SqliteConnection,
    job: JobId,
    position: i64,
) -> Result<Option<StepRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT * FROM job_steps WHERE job_id = ? AND position = ?")
            .bind(job)
            .bind(position)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

async fn end(
    conn: &mut SqliteConnection,
    job: JobId,
    position: i64,
    state: StepState,
    exit_code: Option<i64>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let Some(step) = get(conn, job, position).await? else {
        return Ok(());
    };
    if !step.state.can_become(state) {
        return Ok(());
    }
    sqlx::query(
        "UPDATE job_steps SET state = ?, exit_code = ?, reason = ?, finished_at = ?
         WHERE job_id = ? AND position = ?",
    )
    .bind(state)
    .bind(exit_code)
    .bind(reason)
    .bind(now)
    .bind(job)
    .bind(position)
    .execute(&mut *conn)
    .await?;
    // A step that never started ends without an event of its own: the job's end says why.
    if step.state == StepState::Running {
        let ended = StepRow {
            state,
            exit_code,
            reason: reason.map(str::to_owned),
            finished_at: Some(now),
            ..step
        };
        events::append(conn, job, &[NewEvent::step(&ended.view(), now)]).await?;
    }
    Ok(())
}

/// Closes the steps a job leaves open when it ends with `status` (in the job's transaction): a
/// running step takes the job's end ([`StepState::of_job_end`]), a pending one is `skipped`.
pub async fn close_open(
    conn: &mut SqliteConnection,
    job: JobId,
    status: JobStatus,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let open: Vec<(i64, StepState)> = sqlx::query_as(
        "SELECT position, state FROM job_steps
         WHERE job_id = ? AND state IN ('pending', 'running') ORDER BY position",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    for (position, state) in open {
        let next = match state {
            StepState::Running => StepState::of_job_end(status),
            _ => StepState::Skipped,
        };
        end(conn, job, position, next, None, None, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Outcome;
    use crate::db::jobs;
    use crate::project::RootFiles;
    use crate::step::test_task;
    use crate::testing::{claimed_job_with_steps, temp_db};
    use crate::EventKind;

    #[tokio::test]
    async fn a_retry_is_appended_once_after_the_plan() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        let planned = list(&pool, job.id).await.unwrap();
        let test = planned.last().unwrap().spec().unwrap();
        let retry = test.retry(&["t.py::a".into()], 2).unwrap();
        let rows = append(&pool, job.id, epoch, &retry).await.unwrap();
        assert_eq!(rows.len(), planned.len() + 1);
        let last = rows.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.position, last.state),
            ("retry-1", planned.len() as i64 + 1, StepState::Pending)
        );
        assert_eq!(last.spec().unwrap(), retry);
        // Deciding the same again (after a restart) adds nothing.
        assert_eq!(append(&pool, job.id, epoch, &retry).await.unwrap(), rows);
        crate::db::lease::acquire(&pool, "other").await.unwrap();
        let next = retry.retry(&["t.py::a".into()], 3).unwrap();
        assert!(matches!(
            append(&pool, job.id, epoch, &next).await,
            Err(DbError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn steps_move_by_the_rule_write_their_events_and_close_with_the_job() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        let root = RootFiles::from_pairs([("requirements.txt", &b""[..])]);
        let (specs, _) = test_task(&root, "img", &[], crate::project::Installer::Auto).unwrap();

        let planned = list(&pool, job.id).await.unwrap();
        assert_eq!(planned.len(), 2);
        assert!(planned.iter().all(|s| s.state == StepState::Pending));
        assert_eq!(planned[1].spec().unwrap(), specs[1]);
        // Planning again keeps the plan the job started with.
        let again = plan(&pool, job.id, epoch, &specs[1..]).await.unwrap();
        assert_eq!(again, planned);

        start(&pool, job.id, epoch, 1).await.unwrap();
        let current = jobs::get(&pool, job.id).await.unwrap().unwrap();
        assert_eq!(current.step.as_deref(), Some("install"));
        finish(&pool, job.id, epoch, 1, StepState::Passed, Some(0), None)
            .await
            .unwrap();
        // A terminal step never changes; a step that is not running cannot pass.
        finish(&pool, job.id, epoch, 1, StepState::Failed, Some(1), None)
            .await
            .unwrap();
        finish(&pool, job.id, epoch, 2, StepState::Passed, Some(0), None)
            .await
            .unwrap();
        let rows = list(&pool, job.id).await.unwrap();
        assert_eq!(rows[0].state, StepState::Passed);
        assert_eq!(rows[0].exit_code, Some(0));
        assert_eq!(rows[1].state, StepState::Pending);

        start(&pool, job.id, epoch, 2).await.unwrap();
        let outcome = Outcome::new(JobStatus::Cancelled).with_reason("cancelled by the user");
        assert!(jobs::finish(&pool, job.id, Some(epoch), &outcome)
            .await
            .unwrap());
        let rows = list(&pool, job.id).await.unwrap();
        assert_eq!(rows[1].state, StepState::Cancelled);
        assert!(rows[1].finished_at.is_some());
        assert_eq!(jobs::get(&pool, job.id).await.unwrap().unwrap().step, None);

        let events = events::list_after(&pool, job.id, 0, 100).await.unwrap();
        let kinds: Vec<(EventKind, &str)> =
            events.iter().map(|e| (e.kind, e.text.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Status, "running"),
                (EventKind::Step, "install"),
                (EventKind::Step, "install"),
                (EventKind::Step, "test"),
                (EventKind::Step, "test"),
                (EventKind::Status, "cancelled"),
                (EventKind::Complete, "cancelled"),
            ]
        );
        let crate::api::StreamEvent::Step { step, .. } = events[4].to_stream_event() else {
            panic!("a step event")
        };
        assert_eq!(
            (step.name.as_str(), step.state),
            ("test", StepState::Cancelled)
        );
    }

    #[tokio::test]
    async fn pending_steps_are_skipped_when_the_job_ends_before_them() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        start(&pool, job.id, epoch, 1).await.unwrap();
        finish(
            &pool,
            job.id,
            epoch,
            1,
            StepState::Failed,
            Some(1),
            Some("pip install failed"),
        )
        .await
        .unwrap();
        let outcome = Outcome::new(JobStatus::Error).with_reason("pip install failed");
        jobs::finish(&pool, job.id, Some(epoch), &outcome)
            .await
            .unwrap();
        let states: Vec<StepState> = list(&pool, job.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.state)
            .collect();
        assert_eq!(states, [StepState::Failed, StepState::Skipped]);
        // The job's end is the rule too: an ended job does not end again.
        let again = Outcome::new(JobStatus::Passed);
        assert!(!jobs::finish(&pool, job.id, Some(epoch), &again)
            .await
            .unwrap());
    }
}
