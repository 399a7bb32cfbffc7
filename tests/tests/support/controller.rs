//! Helpers shared by the `controller_*` tests (included with `#[path]`).
#![allow(dead_code)]

use std::time::Duration;

use ci_common::db::events::{self, EventRow};
use ci_common::db::jobs::{self, Job};
use ci_common::{EventKind, JobId, JobStatus, UserId};
use ci_tests::{fixture, wait_for, zip_dir, TestDb};

/// Queues a fixture project as a job of `user`.
pub async fn queue(db: &TestDb, user: UserId, name: &str) -> JobId {
    jobs::create(&db.pool, user, "test", &zip_dir(&fixture(name)))
        .await
        .expect("create job")
        .id
}

/// Waits for a job to reach a terminal state and returns it.
pub async fn finished(db: &TestDb, id: JobId, timeout: Duration) -> Job {
    wait_for(&format!("job {id} to finish"), timeout, || async {
        let job = jobs::get(&db.pool, id)
            .await
            .expect("get job")
            .expect("job exists");
        job.status.is_terminal().then_some(job)
    })
    .await
}

/// Waits until a job is running and has a log line containing `needle`.
pub async fn running_with_line(db: &TestDb, id: JobId, needle: &str) {
    wait_for(
        &format!("job {id} to print {needle:?}"),
        Duration::from_secs(120),
        || async {
            let events = all_events(db, id).await;
            events
                .iter()
                .any(|e| e.kind == EventKind::Log && e.text.contains(needle))
                .then_some(())
        },
    )
    .await
}

pub async fn all_events(db: &TestDb, id: JobId) -> Vec<EventRow> {
    events::list_after(&db.pool, id, 0, 10_000_000)
        .await
        .expect("events")
}

/// The text of every log event, in order.
pub fn log_texts(events: &[EventRow]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Log)
        .map(|e| e.text.as_str())
        .collect()
}

/// Fails unless each of `needles` is in exactly one of `lines` (a step that ran twice, or a
/// line stored twice or lost, shows here).
pub fn assert_each_once(lines: &[&str], needles: &[&str]) {
    for needle in needles {
        let count = lines.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(count, 1, "{needle:?} appears {count} times in {lines:#?}");
    }
}

/// The text of every notice, in order.
pub fn notices(events: &[EventRow]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Notice)
        .map(|e| e.text.as_str())
        .collect()
}

/// Checks what every finished job's events look like: seq 1.. without gaps, `running` first,
/// `complete` last with the job's status.
pub fn assert_well_formed(job: &Job, events: &[EventRow]) {
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "seqs without gaps"
    );
    assert_eq!(events[0].kind, EventKind::Status);
    assert_eq!(events[0].text, JobStatus::Running.as_str());
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::Complete);
    assert_eq!(last.text, job.status.as_str());
}

pub const JOB_WAIT: Duration = Duration::from_secs(180);
