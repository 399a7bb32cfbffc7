//! The controller runs the fixture projects in the runner image and records what a user sees:
//! status, reason, exit code and the log.

#[path = "support/controller.rs"]
mod support;

use ci_common::db::uploads;
use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn passing_and_failing_projects_end_passed_and_failed() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = Controller::start_with(&db, &["--max-concurrent-jobs", "2"]);
    let passing = queue(&db, user.id, "passing").await;
    let failing = queue(&db, user.id, "failing").await;

    let job = finished(&db, passing, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    assert_eq!(job.exit_code, Some(0));
    let events = all_events(&db, passing).await;
    assert_well_formed(&job, &events);
    assert!(notices(&events).contains(&"running tests: python3 -m pytest -v"));
    assert!(
        log_texts(&events).iter().any(|l| l.contains("passed")),
        "pytest summary in the log"
    );

    let job = finished(&db, failing, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Failed, "reason: {:?}", job.reason);
    assert_eq!(job.exit_code, Some(1));
    let events = all_events(&db, failing).await;
    assert_well_formed(&job, &events);
    assert!(
        log_texts(&events)
            .iter()
            .any(|l| l.contains("assert 1 + 1 == 3")),
        "the failed assertion is in the log"
    );

    // Each project's source is kept once (for `ci retry`); nothing else is left behind:
    // containers, volumes.
    assert_eq!(uploads::count(&db.pool).await.unwrap(), 2);
    ci_tests::wait_for("containers and volumes to be removed", JOB_WAIT, || async {
        (controller.containers().is_empty() && controller.volumes().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_projects_end_in_error_with_a_reason() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db, &["--max-concurrent-jobs", "2"]);
    let syntax = queue(&db, user.id, "syntax_error").await;
    let empty = queue(&db, user.id, "no_tests").await;

    let job = finished(&db, syntax, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error);
    assert_eq!(job.exit_code, Some(2));
    let reason = job.reason.clone().unwrap();
    assert!(
        reason.contains("pytest exit 2") && reason.contains("syntax error"),
        "{reason}"
    );
    let events = all_events(&db, syntax).await;
    assert_well_formed(&job, &events);
    assert!(
        log_texts(&events).iter().any(|l| l.contains("SyntaxError")),
        "pytest's error is in the log"
    );

    let job = finished(&db, empty, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error);
    assert_eq!(job.exit_code, Some(5));
    assert!(
        job.reason
            .as_deref()
            .unwrap()
            .contains("no tests were collected"),
        "{:?}",
        job.reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requirements_are_installed_or_skipped_with_a_notice() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db, &["--max-concurrent-jobs", "2"]);
    let with = queue(&db, user.id, "requirements_satisfied").await;
    let without = queue(&db, user.id, "no_requirements").await;

    let job = finished(&db, with, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(&db, with).await;
    assert_well_formed(&job, &events);
    let said = notices(&events);
    let install = said
        .iter()
        .position(|n| *n == "installing requirements.txt")
        .expect("install notice");
    let test = said
        .iter()
        .position(|n| n.starts_with("running tests"))
        .expect("test notice");
    assert!(install < test);

    let job = finished(&db, without, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(&db, without).await;
    let said = notices(&events);
    assert!(
        said.iter().any(
            |n| n.starts_with("nothing to install") && n.ends_with("skipping the install step")
        ),
        "{said:?}"
    );
    assert!(
        !said.iter().any(|n| n.starts_with("installing")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_survives_long_lines_are_split_and_bad_bytes_replaced() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db, &["--max-line-bytes", "16k"]);
    let id = queue(&db, user.id, "unicode_long_lines").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(&db, id).await;
    let lines = log_texts(&events);
    for expected in [
        "unicode: café naïve über ✓ Ωμέγα",
        "emoji: 😀 🚀 🧪 👩‍💻",
        "cjk: 你好，世界 こんにちは 안녕하세요",
        "after invalid bytes",
    ] {
        // (pytest prints the test's file name before the first line, on the same line)
        assert!(
            lines.iter().any(|l| l.ends_with(expected)),
            "missing {expected:?}"
        );
    }
    // The 100,000-character line arrives in pieces of at most 16 KiB that add up to it.
    let start = lines
        .iter()
        .position(|l| l.starts_with("long:"))
        .expect("the long line");
    let pieces: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| l.starts_with("long:") || l.chars().all(|c| c == 'x'))
        .copied()
        .collect();
    assert!(pieces.len() >= 7, "split into {} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= 16 * 1024));
    assert_eq!(pieces.concat(), format!("long:{}", "x".repeat(100_000 - 5)));
    let invalid = lines
        .iter()
        .find(|l| l.starts_with("invalid utf-8:"))
        .expect("the invalid line is kept");
    assert!(
        invalid.contains('\u{fffd}') && invalid.ends_with(" end"),
        "{invalid:?}"
    );
}
