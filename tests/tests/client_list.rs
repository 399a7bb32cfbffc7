//! `ci list`, `ci status` and `ci cancel` as users run them.

#[path = "support/client.rs"]
mod support;

use ci_tests::ci_common::api::JobView;
use ci_tests::ci_common::JobStatus;
use ci_tests::{fixture, submit, zip_dir};
use support::{run, wait_until_finished, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_only_the_callers_jobs() {
    let stack = Stack::start().await;
    let bob = stack.db.user("bob").await;
    let here = fixture("passing");

    let empty = run(stack.ci(&here, &["list"])).expect_code(0);
    assert_eq!(empty.stdout, "No jobs found.\n");

    let mine = stack.submit_async(&here);
    let theirs = submit(&stack.server, &bob.key, zip_dir(&here)).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until_finished(&stack.server.url, &stack.ada.key, &mine).await;

    let table = run(stack.ci(&here, &["list"])).expect_code(0).stdout;
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0]
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "JOB ID",
            "STATUS",
            "START TIME",
            "END TIME",
            "SUCCESS",
            "TESTS"
        ]
    );
    assert_eq!(lines.len(), 2, "one job:\n{table}");
    assert!(lines[1].starts_with(&mine), "{table}");
    assert!(
        lines[1].contains("passed") && lines[1].ends_with('✓'),
        "{table}"
    );
    assert!(!table.contains(&theirs), "bob's job is not ada's:\n{table}");

    let json = run(stack.ci(&here, &["list", "--json"]))
        .expect_code(0)
        .stdout;
    let jobs: Vec<JobView> = serde_json::from_str(&json).expect("list --json parses");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id.to_string(), mine);
    assert_eq!(jobs[0].status, JobStatus::Passed);
    assert!(jobs[0].success);

    // Someone else's job does not exist for ada.
    let out = run(stack.ci(&here, &["status", &theirs])).expect_code(1);
    assert!(out.stderr.contains("was not found"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_a_running_job_then_a_finished_one() {
    let stack = Stack::start().await;
    let here = fixture("slow_lines");
    let id = stack.submit_async(&here);

    let out = run(stack.ci(&here, &["cancel", &id])).expect_code(0);
    assert!(out.stdout.contains(&format!("Job {id} ")), "{}", out.stdout);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Cancelled);

    let again = run(stack.ci(&here, &["cancel", &id])).expect_code(1);
    assert!(
        again.stderr.contains("already finished"),
        "{}",
        again.stderr
    );

    let waited = run(stack.ci(&here, &["wait", &id])).expect_code(1);
    assert!(
        waited.stderr.contains(&format!("Job {id} cancelled")),
        "{}",
        waited.stderr
    );
}
