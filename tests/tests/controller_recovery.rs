//! A controller killed with SIGKILL mid-job: the next one reattaches to the running container,
//! continues its log without duplicating or losing a line, and cleans up.

#[path = "support/controller.rs"]
mod support;

use std::time::Duration;

use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_controller_is_replaced_and_the_job_finishes_with_every_line_once() {
    a_killed_controller_is_replaced_with_every_line_once(&TestDb::new().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_controller_is_replaced_and_the_job_finishes_with_every_line_once_on_postgres() {
    a_killed_controller_is_replaced_with_every_line_once(&TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_install_is_replaced_and_the_job_finishes_with_every_line_once() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    // pip, whose output the test follows (the kill and reattach are the installer's business
    // as little as the test step's).
    let pip = ["--installer", "pip"];
    let mut first = Controller::start_with(&db, &pip);
    let prefix = first.prefix.clone();
    let id = queue(&db, user.id, "slow_install").await;
    // pip has started on the project (its setup.py takes seconds).
    running_with_line(&db, id, "Obtaining file:///workspace/src").await;
    first.proc.signal("KILL");
    first.proc.wait_exit(Duration::from_secs(10));

    let second = Controller::start_with_prefix(&db, &prefix, &pip);
    let job = finished(&db, id, JOB_WAIT).await;
    let events = all_events(&db, id).await;
    let lines = log_texts(&events);
    assert_eq!(
        job.status,
        JobStatus::Passed,
        "reason: {:?}\n{lines:#?}",
        job.reason
    );
    assert_well_formed(&job, &events);
    assert_each_once(
        &lines,
        &[
            "Obtaining file:///workspace/src",
            "Successfully installed slowpkg-0.1",
        ],
    );
    // Both steps ran once, in order, and the install was not started again.
    let said = notices(&events);
    assert_eq!(
        said.iter().filter(|n| n.starts_with("installing")).count(),
        1,
        "{said:?}"
    );
    assert!(lines.iter().any(|l| l.contains("1 passed")), "{lines:#?}");
    drop(second);
    drop(first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_without_a_container_is_lost_and_orphans_are_removed() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let mut first = Controller::start(&db);
    let prefix = first.prefix.clone();
    let id = queue(&db, user.id, "slow_lines").await;
    running_with_line(&db, id, "tick 2").await;
    first.proc.signal("KILL");
    first.proc.wait_exit(Duration::from_secs(10));
    // The container vanishes while no controller runs.
    ci_tests::remove_prefix_leftovers(&prefix);

    let _second = Controller::start_with_prefix(&db, &prefix, &[]);
    let job = finished(&db, id, Duration::from_secs(30)).await;
    assert_eq!(job.status, JobStatus::Lost);
    assert_eq!(
        job.reason.as_deref(),
        Some("the controller restarted and found no container for this job")
    );
}
