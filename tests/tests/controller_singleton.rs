//! One controller per database, fair scheduling between users, and a missing image.

#[path = "support/controller.rs"]
mod support;

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{wait_for, Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_controller_on_the_same_database_says_who_holds_the_lock_and_exits() {
    a_second_controller_is_refused(&TestDb::new().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_controller_on_the_same_database_says_who_holds_the_lock_and_exits_on_postgres() {
    a_second_controller_is_refused(&TestDb::postgres().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_one_job_does_not_wait_behind_another_users_ten() {
    let db = TestDb::new().await;
    let ada = db.user("Ada").await;
    let bob = db.user("Bob").await;
    let mut ada_jobs = Vec::new();
    for _ in 0..10 {
        ada_jobs.push(queue(&db, ada.id, "passing").await);
    }
    let bob_job = queue(&db, bob.id, "passing").await;
    let _controller = Controller::start_with(&db, &["--max-concurrent-jobs", "1"]);
    let started = |id| {
        let pool = db.pool.clone();
        async move { jobs::get(&pool, id).await.unwrap().unwrap().started_at }
    };
    let ada_third = wait_for("Ada's third job to start", JOB_WAIT, || {
        started(ada_jobs[2])
    })
    .await;
    let bob_start = started(bob_job)
        .await
        .expect("Bob's job started before Ada's third");
    assert!(
        bob_start < ada_third,
        "Bob {bob_start} vs Ada's third {ada_third}"
    );
    let ada_second = started(ada_jobs[1]).await.unwrap();
    let ada_first = started(ada_jobs[0]).await.unwrap();
    assert!(
        ada_first < ada_second && ada_second < ada_third,
        "FIFO within a user"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_ends_the_job_with_how_to_build_the_runner_image() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start_with(&db, &["--image", "ci-does-not-exist:latest"]);
    let id = queue(&db, user.id, "passing").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error);
    let reason = job.reason.unwrap();
    assert!(reason.contains("ci-does-not-exist:latest"), "{reason}");
    assert!(reason.contains("the Docker host local"), "{reason}");
    assert!(reason.contains("scripts/build-runner-image.sh"), "{reason}");
    assert!(reason.contains("--image ci-runner:bookworm"), "{reason}");
}
