//! The `job_steps` table: each job's planned steps with their specification and state. Every
//! transition checks [`StepState::can_become`] and writes its `step` event in the same
//! transaction.

use chrono::{DateTime, Utc};

use super::events::{self, NewEvent};
use super::{changes, jobs, lease, on_exec, BeginWrite as _, DbError, Exec};
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

/// Stores a job's plan as pending steps after the steps it has (a job from git has its fetch
/// step first), unless it has one of them already (a restarted controller keeps the plan the job
/// started with). Fenced by the lease epoch. Returns the job's steps.
pub async fn plan(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: i64,
    specs: &[StepSpec],
) -> Result<Vec<StepRow>, DbError> {
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        jobs::lock_row(&mut *tx, job).await?;
        let existing = list(&mut *tx, job).await?;
        let after = existing.last().map_or(0, |r| r.position);
        if specs
            .iter()
            .all(|spec| existing.iter().all(|r| r.name != spec.name))
        {
            for (i, spec) in specs.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO job_steps (job_id, position, name, state, spec)
                     VALUES ($1, $2, $3, 'pending', $4)",
                )
                .bind(job)
                .bind(after + i as i64 + 1)
                .bind(&spec.name)
                .bind(serde_json::to_string(spec).expect("a step spec serializes"))
                .execute(&mut *tx)
                .await?;
            }
        }
        let steps = list(&mut *tx, job).await?;
        tx.commit().await?;
        steps
    }))
}

/// Adds `spec` as the job's next step, pending (a retry of failed tests), unless the job already
/// has a step of that name: a controller that decides the same again after a restart adds
/// nothing. Fenced by the lease epoch. Returns the job's steps.
pub async fn append(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: i64,
    spec: &StepSpec,
) -> Result<Vec<StepRow>, DbError> {
    Ok(on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        jobs::lock_row(&mut *tx, job).await?;
        sqlx::query(
            "INSERT INTO job_steps (job_id, position, name, state, spec)
             SELECT $1, COALESCE(MAX(position), 0) + 1, $2, 'pending', $3
             FROM job_steps WHERE job_id = $1
             ON CONFLICT (job_id, name) DO NOTHING",
        )
        .bind(job)
        .bind(&spec.name)
        .bind(serde_json::to_string(spec).expect("a step spec serializes"))
        .execute(&mut *tx)
        .await?;
        let steps = list(&mut *tx, job).await?;
        tx.commit().await?;
        steps
    }))
}

/// A job's steps in order.
pub async fn list(ex: impl Into<Exec<'_>>, job: JobId) -> Result<Vec<StepRow>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM job_steps WHERE job_id = $1 ORDER BY position"
    )
    .bind(job)
    .fetch_all(e)
    .await?))
}

/// Starts a pending step: it becomes `running`, the job's current step (its log position
/// starts afresh), and a `step` event says so. Fenced by the lease epoch.
pub async fn start(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: i64,
    position: i64,
) -> Result<(), DbError> {
    let now = super::now();
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let Some(step) = get(&mut *tx, job, position).await? else {
            return Ok(());
        };
        if !step.state.can_become(StepState::Running) {
            return Ok(());
        }
        sqlx::query(
            "UPDATE job_steps SET state = 'running', started_at = $1
             WHERE job_id = $2 AND position = $3",
        )
        .bind(now)
        .bind(job)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET step = $1, log_cursor = NULL, log_cursor_skip = 0
             WHERE id = $2 AND status = 'running'",
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
        events::append(&mut *tx, job, &[NewEvent::step(&started.view(), now)]).await?;
        changes::notify(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Ends a step with `state` (a terminal state its current one can become), its exit code and
/// reason, and writes its `step` event. Fenced by the lease epoch; a step already ended is left
/// as it is.
pub async fn finish(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: i64,
    position: i64,
    state: StepState,
    exit_code: Option<i64>,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let now = super::now();
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        if end(&mut *tx, job, position, state, exit_code, reason, now).await? {
            changes::notify(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

async fn get(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    position: i64,
) -> Result<Option<StepRow>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM job_steps WHERE job_id = $1 AND position = $2"
    )
    .bind(job)
    .bind(position)
    .fetch_optional(e)
    .await?))
}

/// Ends the step (caller holds the transaction); returns whether it wrote a `step` event.
async fn end(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    position: i64,
    state: StepState,
    exit_code: Option<i64>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let mut ex = ex.into();
    let now = super::timestamp(now);
    // PostgreSQL's text cannot hold NUL (a reason can quote a step's output).
    let stored = reason.map(|r| super::stored_text(ex.is_postgres(), r));
    let Some(step) = get(ex.reborrow(), job, position).await? else {
        return Ok(false);
    };
    if !step.state.can_become(state) {
        return Ok(false);
    }
    on_exec!(ex.reborrow(), |e| sqlx::query(
        "UPDATE job_steps SET state = $1, exit_code = $2, reason = $3, finished_at = $4
         WHERE job_id = $5 AND position = $6",
    )
    .bind(state)
    .bind(exit_code)
    .bind(stored.as_deref())
    .bind(now)
    .bind(job)
    .bind(position)
    .execute(e)
    .await
    .map(drop)?);
    // A step that never started ends without an event of its own: the job's end says why.
    if step.state != StepState::Running {
        return Ok(false);
    }
    let ended = StepRow {
        state,
        exit_code,
        reason: stored.map(|r| r.into_owned()),
        finished_at: Some(now),
        ..step
    };
    events::append(ex, job, &[NewEvent::step(&ended.view(), now)]).await?;
    Ok(true)
}

/// Closes the steps a job leaves open when it ends with `status` (in the job's transaction): a
/// running step takes the job's end ([`StepState::of_job_end`]), a pending one is `skipped`.
pub async fn close_open(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    status: JobStatus,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let mut ex = ex.into();
    let open: Vec<(i64, StepState)> = on_exec!(ex.reborrow(), |e| sqlx::query_as(
        "SELECT position, state FROM job_steps
         WHERE job_id = $1 AND state IN ('pending', 'running') ORDER BY position",
    )
    .bind(job)
    .fetch_all(e)
    .await?);
    for (position, state) in open {
        let next = match state {
            StepState::Running => StepState::of_job_end(status),
            _ => StepState::Skipped,
        };
        end(ex.reborrow(), job, position, next, None, None, now).await?;
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
    use crate::testing::{
        backends, claimed_job_with_steps, job_with_lease, take_over_lease, temp_db, Backend,
    };
    use crate::EventKind;

    /// The `test` task's steps for a project with a requirements.txt: `install`, then `test`.
    fn test_specs() -> Vec<StepSpec> {
        let root = RootFiles::from_pairs([("requirements.txt", &b""[..])]);
        test_task(&root, "img", &[], crate::project::Installer::Auto)
            .unwrap()
            .0
    }

    /// A running job on `db` (set with plain SQL while claiming is SQLite's alone) with the
    /// `test` task's steps planned, and the lease epoch.
    async fn running_job_with_steps(db: &Backend) -> (JobId, i64) {
        let (job, epoch) = job_with_lease(db).await;
        on_exec!(db.exec(), |e| sqlx::query(
            "UPDATE jobs SET status = 'running', started_at = $1, controller_epoch = $2
             WHERE id = $3"
        )
        .bind(crate::db::now())
        .bind(epoch)
        .bind(job)
        .execute(e)
        .await
        .map(drop)
        .unwrap());
        let planned = plan(db.exec(), job, epoch, &test_specs()).await.unwrap();
        assert_eq!(planned.len(), 2, "{db:?}");
        (job, epoch)
    }

    /// Ends the job's open steps as a job ending with `status` does, in a write transaction.
    async fn close(db: &Backend, job: JobId, status: JobStatus) {
        on_exec!(db.exec(), |e| {
            let mut tx = e.begin_write().await.unwrap();
            close_open(&mut *tx, job, status, crate::db::now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        });
    }

    #[tokio::test]
    async fn a_plan_is_kept_a_retry_appended_once_and_a_lost_lease_writes_nothing_on_every_backend()
    {
        for db in backends().await {
            let (job, epoch) = running_job_with_steps(&db).await;
            let specs = test_specs();
            let planned = list(db.exec(), job).await.unwrap();
            let seen: Vec<_> = planned
                .iter()
                .map(|s| (s.position, s.name.as_str(), s.state))
                .collect();
            assert_eq!(
                seen,
                [
                    (1, "install", StepState::Pending),
                    (2, "test", StepState::Pending)
                ],
                "{db:?}"
            );
            assert_eq!(planned[1].spec().unwrap(), specs[1], "{db:?}");
            // Planning again keeps the plan the job started with.
            let again = plan(db.exec(), job, epoch, &specs[1..]).await.unwrap();
            assert_eq!(again, planned, "{db:?}");

            let retry = specs[1].retry(&["t.py::a".into()], 2).unwrap();
            let rows = append(db.exec(), job, epoch, &retry).await.unwrap();
            assert_eq!(rows.len(), 3, "{db:?}");
            let last = rows.last().unwrap();
            assert_eq!(
                (last.name.as_str(), last.position, last.state),
                ("retry-1", 3, StepState::Pending),
                "{db:?}"
            );
            assert_eq!(last.spec().unwrap(), retry, "{db:?}");
            // Deciding the same again (after a restart) adds nothing.
            let same = append(db.exec(), job, epoch, &retry).await.unwrap();
            assert_eq!(same, rows, "{db:?}");

            take_over_lease(&db).await;
            let next = retry.retry(&["t.py::a".into()], 3).unwrap();
            let lost = [
                append(db.exec(), job, epoch, &next).await.map(drop),
                start(db.exec(), job, epoch, 1).await,
                finish(db.exec(), job, epoch, 1, StepState::Passed, Some(0), None).await,
            ];
            for result in lost {
                assert!(
                    matches!(result, Err(DbError::LeaseLost(e)) if e == epoch),
                    "{db:?}: {result:?}"
                );
            }
            assert_eq!(list(db.exec(), job).await.unwrap(), rows, "{db:?}");
            assert_eq!(events::last_seq(db.exec(), job).await.unwrap(), 0, "{db:?}");
        }
    }

    #[tokio::test]
    async fn a_new_plan_under_a_lost_lease_stores_nothing_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = job_with_lease(&db).await;
            take_over_lease(&db).await;
            let err = plan(db.exec(), job, epoch, &test_specs())
                .await
                .unwrap_err();
            assert!(matches!(err, DbError::LeaseLost(_)), "{db:?}: {err:?}");
            assert_eq!(list(db.exec(), job).await.unwrap(), [], "{db:?}");
        }
    }

    #[tokio::test]
    async fn reasons_quoting_a_nul_are_stored_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = running_job_with_steps(&db).await;
            start(db.exec(), job, epoch, 1).await.unwrap();
            finish(
                db.exec(),
                job,
                epoch,
                1,
                StepState::Failed,
                Some(1),
                Some("a\0b"),
            )
            .await
            .unwrap();
            let outcome = crate::api::Outcome::new(JobStatus::Error).with_reason("c\0d");
            jobs::finish(db.exec(), job, Some(epoch), &outcome)
                .await
                .unwrap();
            let kept = if db.exec().is_postgres() {
                '\u{FFFD}'
            } else {
                '\0'
            };
            let step = list(db.exec(), job).await.unwrap()[0].clone();
            assert_eq!(step.reason, Some(format!("a{kept}b")), "{db:?}");
            let ended = jobs::get(db.exec(), job).await.unwrap().unwrap();
            assert_eq!(
                (ended.status, ended.reason),
                (JobStatus::Error, Some(format!("c{kept}d"))),
                "{db:?}"
            );
        }
    }

    #[tokio::test]
    async fn steps_move_by_the_rule_with_their_events_and_close_with_the_job_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = running_job_with_steps(&db).await;
            start(db.exec(), job, epoch, 1).await.unwrap();
            let current = jobs::get(db.exec(), job).await.unwrap().unwrap();
            assert_eq!(current.step.as_deref(), Some("install"), "{db:?}");
            let started = list(db.exec(), job).await.unwrap()[0].clone();
            assert_eq!(started.state, StepState::Running, "{db:?}");
            // Starting again changes nothing.
            start(db.exec(), job, epoch, 1).await.unwrap();
            assert_eq!(list(db.exec(), job).await.unwrap()[0], started, "{db:?}");

            finish(
                db.exec(),
                job,
                epoch,
                1,
                StepState::Failed,
                Some(3),
                Some("pip: «no» match"),
            )
            .await
            .unwrap();
            // A terminal step never changes; a step that is not running cannot pass.
            finish(db.exec(), job, epoch, 1, StepState::Passed, Some(0), None)
                .await
                .unwrap();
            finish(db.exec(), job, epoch, 2, StepState::Passed, Some(0), None)
                .await
                .unwrap();
            let rows = list(db.exec(), job).await.unwrap();
            assert_eq!(
                (
                    rows[0].state,
                    rows[0].exit_code,
                    rows[0].reason.as_deref(),
                    rows[0].started_at
                ),
                (
                    StepState::Failed,
                    Some(3),
                    Some("pip: «no» match"),
                    started.started_at
                ),
                "{db:?}"
            );
            assert!(rows[0].finished_at >= rows[0].started_at, "{db:?}");
            assert_eq!(rows[1].state, StepState::Pending, "{db:?}");

            start(db.exec(), job, epoch, 2).await.unwrap();
            assert_eq!(
                jobs::get(db.exec(), job)
                    .await
                    .unwrap()
                    .unwrap()
                    .step
                    .as_deref(),
                Some("test"),
                "{db:?}"
            );
            close(&db, job, JobStatus::Cancelled).await;
            let rows = list(db.exec(), job).await.unwrap();
            assert_eq!(rows[1].state, StepState::Cancelled, "{db:?}");
            assert!(rows[1].finished_at.is_some(), "{db:?}");

            let events = events::list_after(db.exec(), job, 0, 100).await.unwrap();
            let steps: Vec<(&str, StepState, i64)> = events
                .iter()
                .map(|e| {
                    assert_eq!(e.kind, EventKind::Step, "{db:?}");
                    let crate::api::StreamEvent::Step { step, .. } = e.to_stream_event() else {
                        panic!("a step event")
                    };
                    (e.text.as_str(), step.state, step.position)
                })
                .collect();
            assert_eq!(
                steps,
                [
                    ("install", StepState::Running, 1),
                    ("install", StepState::Failed, 1),
                    ("test", StepState::Running, 2),
                    ("test", StepState::Cancelled, 2),
                ],
                "{db:?}"
            );
            // The stored step reads back as its event showed it.
            let crate::api::StreamEvent::Step { step, .. } = events[1].to_stream_event() else {
                panic!("a step event")
            };
            assert_eq!(step, rows[0].view(), "{db:?}");
        }
    }

    #[tokio::test]
    async fn pending_steps_are_skipped_without_events_when_the_job_ends_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = running_job_with_steps(&db).await;
            let retry = test_specs()[1].retry(&["t.py::a".into()], 2).unwrap();
            append(db.exec(), job, epoch, &retry).await.unwrap();
            start(db.exec(), job, epoch, 1).await.unwrap();
            close(&db, job, JobStatus::TimedOut).await;
            let states: Vec<StepState> = list(db.exec(), job)
                .await
                .unwrap()
                .iter()
                .map(|s| s.state)
                .collect();
            assert_eq!(
                states,
                [
                    StepState::of_job_end(JobStatus::TimedOut),
                    StepState::Skipped,
                    StepState::Skipped
                ],
                "{db:?}"
            );
            // Only the running step wrote its end.
            assert_eq!(events::last_seq(db.exec(), job).await.unwrap(), 2, "{db:?}");
            // Closing again finds nothing open.
            close(&db, job, JobStatus::Error).await;
            assert_eq!(events::last_seq(db.exec(), job).await.unwrap(), 2, "{db:?}");
        }
    }

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
