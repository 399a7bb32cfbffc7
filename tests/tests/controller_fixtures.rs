//! The controller runs the fixture projects in the runner image and records what a user sees:
//! status, reason, exit code and the log.

#[path = "controller_support.rs"]
mod support;

use ci_common::db::uploads;
use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn passing_and_failing_projects_end_passed_and_failed() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = Controller::start_with(&db.path, &["--max-concurrent-jobs", "2"]);
    let passing = queue(&db, user.id, "passing").await;
    let failing = queue(&db, user.id, "failing").await;

    let job = finished(&db, passing, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    assert_eq!(job.exit_code, Some(0));
    let events = all_events(&db, passing).await;
    assert_well_formed(&job, &events);
    assert!(notices(&events).contains(&"running tests"));
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

    // Nothing is left behind: uploads, containers, volumes.
    assert_eq!(uploads::count(&db.pool).await.unwrap(), 0);
    ci_tests::wait_for("containers and volumes to be removed", JOB_WAIT, || async {
        (controller.containers().is_empty() && controller.volumes().is_empty()).then_some(())
    })
    .await;
}
