//! Retention as an operator meets it: `ci-admin prune --older-than 30d` deletes exactly the jobs
//! that ended before then (with their logs), leaves every other job alone, and a job streaming
//! meanwhile loses no line. The batching itself is tested in `ci_common::db::retention`.

#[path = "support/client.rs"]
mod support;

#[path = "common_server/mod.rs"]
mod common_server;

use std::process::Command;
use std::time::Duration;

use ci_tests::ci_common::db::Db;
use ci_tests::ci_common::JobStatus;
use ci_tests::{bin, client, fixture, DbArg as _, WAIT};
use support::{run, wait_until_finished, CiProc, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_removes_exactly_the_old_jobs_while_another_streams_every_line() {
    let stack = Stack::start().await;
    let passing = fixture("passing");
    let ids: Vec<String> = (0..3).map(|_| stack.submit_async(&passing)).collect();
    for id in &ids {
        wait_until_finished(&stack.server.url, &stack.ada.key, id).await;
    }
    // The first two ended 40 days ago.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    for id in &ids[..2] {
        let sql = "UPDATE jobs SET finished_at = $1 WHERE id = $2";
        let id: ci_tests::ci_common::JobId = id.parse().unwrap();
        match &stack.db.pool {
            Db::Sqlite(pool) => sqlx::query(sql)
                .bind(long_ago)
                .bind(id)
                .execute(pool)
                .await
                .map(drop),
            Db::Postgres(pool) => sqlx::query(sql)
                .bind(long_ago)
                .bind(id)
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    // A job streams to `ci submit` while the prune runs.
    let mut streaming = CiProc::spawn(stack.ci(&fixture("slow_lines"), &["submit", "test"]));
    streaming.wait_for_line("tick 3", WAIT);
    let admin = |args: &[&str]| {
        let out = Command::new(bin("ci-admin"))
            .args((&stack.db.url).db_args())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let dry = admin(&["prune", "--older-than", "30d", "--dry-run", "--json"]);
    assert_eq!(dry["jobs"], 2, "{dry}");
    let pruned = admin(&["prune", "--older-than", "30d", "--json"]);
    let gone: Vec<&str> = pruned["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(gone, [ids[0].as_str(), ids[1].as_str()], "{pruned}");
    assert!(pruned["events"].as_u64().unwrap() > 0, "{pruned}");

    for (id, expect) in [(&ids[0], 404), (&ids[1], 404), (&ids[2], 200)] {
        let response = client()
            .get(format!("{}/api/v1/jobs/{id}/log.txt", stack.server.url))
            .bearer_auth(&stack.ada.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expect, "job {id}");
    }
    let out = streaming.finish(Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    for tick in 1..=25 {
        let line = format!("tick {tick}\n");
        assert_eq!(
            out.stdout.matches(&line).count(),
            1,
            "{line:?}\n{}",
            out.stdout
        );
    }
    let list = run(stack.ci(&passing, &["list", "--json"])).expect_code(0);
    let jobs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let listed: Vec<&str> = jobs
        .as_array()
        .or_else(|| jobs["jobs"].as_array())
        .expect("a list of jobs")
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&ids[2].as_str()) && !listed.contains(&ids[0].as_str()));
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &ids[2]).await;
    assert_eq!(job.status, JobStatus::Passed);
}
