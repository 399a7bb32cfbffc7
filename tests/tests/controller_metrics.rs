//! The controller's `--metrics-addr`: Prometheus text and `/health` on a port of its own.

use std::process::Command;

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{
    bin, client, fixture, listening_url, remove_prefix_leftovers, require_docker, test_image,
    wait_for, zip_dir, Proc, TestDb, WAIT,
};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_queued_and_finished_jobs() {
    require_docker();
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let prefix = format!(
        "citest-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let mut cmd = Command::new(bin("ci-controller"));
    cmd.arg("--db-path")
        .arg(&db.path)
        .args(["--image", &test_image(), "--container-prefix", &prefix])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    let mut controller = Proc::spawn("ci-controller", cmd);
    let line = controller.wait_for_line("metrics on http://", WAIT);
    let url = listening_url(&line).expect("the metrics line names the URL");
    controller.wait_for_line("controller ready", WAIT);

    let health: serde_json::Value = client()
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let job = jobs::create(&db.pool, user.id, "test", &zip_dir(&fixture("passing")))
        .await
        .unwrap();
    wait_for("the job to pass", WAIT, || async {
        let job = jobs::get(&db.pool, job.id).await.unwrap().unwrap();
        (job.status == JobStatus::Passed).then_some(())
    })
    .await;

    let page = wait_for("metrics to count the finished job", WAIT, || async {
        let response = client().get(format!("{url}/metrics")).send().await.ok()?;
        let text = response.text().await.ok()?;
        text.contains("ci_jobs_finished_total{outcome=\"passed\"} 1")
            .then_some(text)
    })
    .await;
    assert!(page.contains("ci_queue_depth 0"), "{page}");
    assert!(page.contains("ci_job_duration_seconds_count 1"), "{page}");

    drop(controller);
    remove_prefix_leftovers(&prefix);
}
