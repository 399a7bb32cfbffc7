//! Helpers shared by the `controller_*` tests (included with `#[path]`).
#![allow(dead_code)]

use std::time::Duration;

use ci_common::db::events::{self, EventRow};
use ci_common::db::jobs::{self, Job};
use ci_common::{EventKind, JobId, JobStatus, UserId};
use ci_tests::{fixture, wait_for, zip_dir, Controller, TestDb, WAIT};

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

/// A controller killed with SIGKILL while a job prints: the next one (same prefix) reattaches
/// and the job finishes with every line stored once. On either backend.
pub async fn a_killed_controller_is_replaced_with_every_line_once(db: &TestDb) {
    let user = db.user("Ada").await;
    let mut first = Controller::start(db);
    let prefix = first.prefix.clone();
    let id = queue(db, user.id, "slow_lines").await;
    running_with_line(db, id, "tick 3").await;

    first.proc.signal("KILL");
    first.proc.wait_exit(Duration::from_secs(10));
    // The job's container keeps running without a controller.
    assert!(!first.containers().is_empty());

    let second = Controller::start_with_prefix(db, &prefix, &[]);
    let job = finished(db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(db, id).await;
    assert_well_formed(&job, &events);
    let lines = log_texts(&events);
    for n in 1..=25 {
        let tick = format!("tick {n}");
        let count = lines
            .iter()
            .filter(|l| {
                l.split_whitespace().eq(tick.split_whitespace()) || l.ends_with(&format!(" {tick}"))
            })
            .count();
        assert_eq!(count, 1, "{tick:?} appears {count} times in {lines:#?}");
    }
    ci_tests::wait_for(
        "the job's container and volume to be removed",
        WAIT,
        || async { (second.containers().is_empty() && second.volumes().is_empty()).then_some(()) },
    )
    .await;
    drop(second);
    drop(first);
}

/// A second controller on a database whose controller runs says who holds it and exits 1. On
/// either backend.
pub fn a_second_controller_is_refused(db: &TestDb) {
    let first = Controller::start(db);
    let mut cmd = std::process::Command::new(ci_tests::bin("ci-controller"));
    cmd.args(ci_tests::DbArg::db_args(&db)).args([
        "--image",
        &ci_tests::test_image(),
        "--container-prefix",
        "citest-second",
    ]);
    let mut second = ci_tests::Proc::spawn("second controller", cmd);
    let line = second.wait_for_line("another controller holds the lock", WAIT);
    assert!(
        line.contains(&format!("pid {}", first.proc.pid())),
        "names the holder: {line}"
    );
    assert!(line.contains("--wait"), "says how to proceed: {line}");
    let status = second.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
}
