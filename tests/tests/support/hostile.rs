//! The hostile fixtures and how their jobs must end, shared by the tests of every runtime
//! (`controller_hostile` with Docker's default, `controller_gvisor` with gVisor; included with
//! `#[path]` beside `support/controller.rs`). Each check starts a controller with the flags its
//! fixture needs plus `runtime`, the flags of the runtime under test.
#![allow(dead_code)]

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};

use crate::support::*;

/// A controller on `db` with `flags` and the runtime's flags.
fn start(db: &TestDb, flags: &[&str], runtime: &[&str]) -> Controller {
    let all: Vec<&str> = flags.iter().chain(runtime).copied().collect();
    Controller::start_with(db, &all)
}

/// Fixtures that attack the sandbox from inside and pass when it holds: `network_access` (no
/// network but loopback), `write_outside` (read-only root, non-root user), `kill_pid1` (PID 1
/// ignores signals from inside). They run at once on one controller.
pub async fn contained_fixtures_pass(runtime: &[&str], names: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let concurrent = names.len().to_string();
    let _controller = start(&db, &["--max-concurrent-jobs", &concurrent], runtime);
    let mut ids = Vec::new();
    for name in names {
        ids.push((name, queue(&db, user.id, name).await));
    }
    for (name, id) in ids {
        let job = finished(&db, id, JOB_WAIT).await;
        let log = log_texts(&all_events(&db, id).await).join("\n");
        assert_eq!(
            job.status,
            JobStatus::Passed,
            "{name}: {:?}\n{log}",
            job.reason
        );
    }
}

/// `fork_bomb` passes only when fork failed (the pids limit) before it forked 100,000 children,
/// and its container is removed.
pub async fn fork_bomb_is_contained(runtime: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = start(
        &db,
        &["--job-timeout", "60s", "--stop-grace", "2s"],
        runtime,
    );
    let id = queue(&db, user.id, "fork_bomb").await;
    let job = finished(&db, id, JOB_WAIT).await;
    let log = log_texts(&all_events(&db, id).await).join("\n");
    assert_eq!(job.status, JobStatus::Passed, "{:?}\n{log}", job.reason);
    assert_eq!(job.exit_code, Some(0), "{log}");
    assert_eq!(job.reason, None);
    assert!(!job.oom_killed);
    assert!(log.contains("1 passed"), "{log}");
    ci_tests::wait_for(
        "the fork bomb's container to be removed",
        JOB_WAIT,
        || async { controller.containers().is_empty().then_some(()) },
    )
    .await;
}

/// `memory_hog` is killed at the memory limit, and the reason names the limit.
pub async fn memory_hog_is_oom_killed(runtime: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = start(&db, &["--memory", "256m"], runtime);
    let id = queue(&db, user.id, "memory_hog").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error, "{:?}", job.reason);
    assert!(job.oom_killed, "{:?}", job.reason);
    let reason = job.reason.unwrap();
    assert!(
        reason.contains("memory") && reason.contains("256m"),
        "{reason}"
    );
}

/// `output_flood` passes with its log capped: the head and the tail kept, one truncation
/// notice between them.
pub async fn output_flood_keeps_head_and_tail(runtime: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = start(&db, &["--log-cap-lines", "2000"], runtime);
    let id = queue(&db, user.id, "output_flood").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(&db, id).await;
    assert_well_formed(&job, &events);
    let lines = log_texts(&events);
    assert!(lines.len() <= 2000, "{} lines stored", lines.len());
    // (pytest prints the test's file name before the first line, on the same line)
    let first = lines.iter().find(|l| l.contains("flood ")).unwrap();
    assert!(
        first.ends_with(&format!("flood 0000001 {}", "x".repeat(85))),
        "the head starts at the first line: {first}"
    );
    assert!(
        lines.contains(&"flood done"),
        "the tail ends with the last line: {:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    let truncations: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.text.starts_with("log truncated: "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(truncations.len(), 1, "one truncation notice");
    let at = truncations[0];
    assert!(events[..at]
        .iter()
        .any(|e| e.text.contains("flood 0000001 ")));
    assert!(events[at..].iter().any(|e| e.text == "flood done"));
    assert!(job.dropped_lines > 0);
    let stored = jobs::get(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(stored.log_lines as usize, lines.len());
}

/// `sleep_forever` is stopped at the job's timeout (not before) and its container removed.
pub async fn sleep_forever_times_out(runtime: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = start(&db, &["--job-timeout", "5s", "--stop-grace", "2s"], runtime);
    let id = queue(&db, user.id, "sleep_forever").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::TimedOut, "{:?}", job.reason);
    let reason = job.reason.unwrap();
    assert!(reason.starts_with("timed out after 5s; "), "{reason}");
    let started = job.started_at.unwrap();
    let took = job.finished_at.unwrap() - started;
    assert!(took >= chrono::Duration::seconds(5), "stopped after {took}");
    ci_tests::wait_for("the container to be removed", JOB_WAIT, || async {
        controller.containers().is_empty().then_some(())
    })
    .await;
}
