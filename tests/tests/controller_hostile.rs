//! Projects that attack the sandbox are contained and end the way a user expects.

#[path = "support/controller.rs"]
mod support;

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};
use support::*;

async fn all_pass(names: &[&str]) {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db.path, &["--max-concurrent-jobs", "2"]);
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

#[tokio::test(flavor = "multi_thread")]
async fn tests_have_no_network_and_a_read_only_root() {
    all_pass(&["network_access", "write_outside"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_cannot_kill_pid1() {
    all_pass(&["kill_pid1"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained_and_the_job_ends() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller =
        Controller::start_with(&db.path, &["--job-timeout", "60s", "--stop-grace", "2s"]);
    let id = queue(&db, user.id, "fork_bomb").await;
    let job = finished(&db, id, JOB_WAIT).await;
    // The test passes only when fork failed (the pids limit) before it forked 100,000 children.
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

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_the_reason_names_the_limit() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db.path, &["--memory", "256m"]);
    let id = queue(&db, user.id, "memory_hog").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error);
    assert!(job.oom_killed);
    let reason = job.reason.unwrap();
    assert!(
        reason.contains("memory") && reason.contains("256m"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_flood_keeps_head_and_tail_with_one_truncation_notice() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db.path, &["--log-cap-lines", "2000"]);
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
        "the tail ends with the last line"
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
