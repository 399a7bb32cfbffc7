//! The controller's `--metrics-addr`: Prometheus text and `/health` on a port of its own.

use std::process::Command;

use ci_common::db::jobs;
use ci_common::{JobId, JobStatus};
use ci_tests::{
    bin, client, fixture, listening_url, remove_prefix_leftovers, require_docker, test_image,
    wait_for, zip_dir, Proc, TestDb, WAIT,
};

/// The value of a gauge or counter line (`name value`) on a metrics page.
fn metric(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the metric `name` reads `value` and returns the page.
async fn metric_reads(url: &str, name: &str, value: i64) -> String {
    wait_for(&format!("{name} to read {value}"), WAIT, || async {
        let response = client().get(format!("{url}/metrics")).send().await.ok()?;
        let page = response.text().await.ok()?;
        (metric(&page, name) == Some(value)).then_some(page)
    })
    .await
}

async fn status(db: &TestDb, id: JobId) -> JobStatus {
    jobs::get(&db.pool, id).await.unwrap().unwrap().status
}

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
    cmd.args(ci_tests::DbArg::db_args(&&db))
        .args(["--image", &test_image(), "--container-prefix", &prefix])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--max-concurrent-jobs",
            "1",
        ])
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
    metric_reads(&url, "ci_queue_depth", 0).await;

    // One job holds the controller's only slot; two more wait behind it.
    let blocker = jobs::create(
        &db.pool,
        user.id,
        "test",
        &zip_dir(&fixture("sleep_forever")),
    )
    .await
    .unwrap()
    .id;
    wait_for("the first job to run", WAIT, || async {
        (status(&db, blocker).await == JobStatus::Running).then_some(())
    })
    .await;
    let passing = zip_dir(&fixture("passing"));
    let mut waiting = Vec::new();
    for _ in 0..2 {
        waiting.push(
            jobs::create(&db.pool, user.id, "test", &passing)
                .await
                .unwrap()
                .id,
        );
    }
    metric_reads(&url, "ci_running_jobs", 1).await;
    metric_reads(&url, "ci_queue_depth", 2).await;
    // The one Docker host, as its health check saw it.
    metric_reads(&url, "ci_host_healthy{host=\"local\"}", 1).await;
    metric_reads(&url, "ci_host_running_jobs{host=\"local\"}", 1).await;
    for id in &waiting {
        assert_eq!(status(&db, *id).await, JobStatus::Queued);
    }

    // Freeing the slot lets them run, one after the other, and the gauge goes back down.
    jobs::request_cancel(&db.pool, blocker, user.id)
        .await
        .unwrap()
        .unwrap();
    for id in waiting {
        wait_for("a waiting job to pass", WAIT, || async {
            (status(&db, id).await == JobStatus::Passed).then_some(())
        })
        .await;
    }
    assert_eq!(status(&db, blocker).await, JobStatus::Cancelled);
    let page = metric_reads(&url, "ci_jobs_finished_total{outcome=\"passed\"}", 2).await;
    assert_eq!(metric(&page, "ci_queue_depth"), Some(0), "{page}");
    assert_eq!(
        metric(&page, "ci_jobs_finished_total{outcome=\"cancelled\"}"),
        Some(1),
        "{page}"
    );
    assert_eq!(
        metric(&page, "ci_job_duration_seconds_count"),
        Some(3),
        "{page}"
    );

    drop(controller);
    remove_prefix_leftovers(&prefix);
}
