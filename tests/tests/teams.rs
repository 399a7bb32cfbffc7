//! Teams as users meet them, with the real binaries: an administrator makes a team with
//! `ci-admin team`; a member submits to it with `ci submit --team`; every member lists, follows,
//! inspects and cancels its jobs, and everyone else gets a 404 on every job route; a member
//! removed loses access at once, an open stream included.

#[path = "support/client.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ci_tests::ci_common::JobStatus;
use ci_tests::{bin, client, fixture, wait_for, DbArg as _, TestUser, WAIT};
use futures_util::StreamExt;
use support::{job_id_in, job_view, run, wait_until_finished, Out, Stack};

/// `ci-admin ARGS` against the stack's database; fails the test unless it succeeds.
fn admin(stack: &Stack, args: &[&str]) -> Out {
    let out = Command::new(bin("ci-admin"))
        .args((&stack.db.url).db_args())
        .args(args)
        .output()
        .unwrap();
    let out = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    out.expect_code(0)
}

/// `ci ARGS` as `user` in `dir`.
fn ci(stack: &Stack, user: &TestUser, dir: &Path, args: &[&str]) -> Out {
    run(stack.env.ci(&stack.server.url, &user.key, dir, args))
}

/// `GET` (or `POST` with `post`) of `path` under /api/v1 as `user`: the status.
async fn status_of(stack: &Stack, user: &TestUser, path: &str, post: bool) -> u16 {
    let url = format!("{}/api/v1/{path}", stack.server.url);
    let request = if post {
        client().post(url)
    } else {
        client().get(url)
    };
    let response = request.bearer_auth(&user.key).send().await.unwrap();
    response.status().as_u16()
}

/// Every route of a job, with whether it is a POST.
fn job_routes(id: &str) -> Vec<(String, bool)> {
    [
        ("", false),
        ("/events", false),
        ("/log", false),
        ("/log.txt", false),
        ("/log/search?q=tick", false),
        ("/tests", false),
        ("/blobs", false),
        ("/artifacts", false),
        ("/cancel", true),
        ("/retry", true),
    ]
    .into_iter()
    .map(|(rest, post)| (format!("jobs/{id}{rest}"), post))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_shares_its_jobs_and_a_removed_member_loses_them_at_once() {
    let stack = Stack::start().await;
    let ada = &stack.ada;
    let bob = stack.db.user("bob").await;
    let eve = stack.db.user("eve").await;
    let project = fixture("passing");
    let slow = fixture("sleep_forever");

    admin(&stack, &["team", "create", "platform"]);
    admin(
        &stack,
        &["team", "add-member", "platform", "--email", &ada.email],
    );
    admin(
        &stack,
        &["team", "add-member", "platform", "--email", &bob.email],
    );
    let listed = admin(&stack, &["team", "list", "--json"]);
    let teams: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(teams[0]["name"], "platform");
    assert_eq!(teams[0]["members"], 2);

    // Someone outside the team cannot submit to it, and is told how to find their teams.
    let refused = ci(
        &stack,
        &eve,
        &project,
        &["submit", "--team", "platform", "test"],
    );
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("not a member") && refused.stderr.contains("ci teams"),
        "{}",
        refused.stderr
    );

    // Ada's team job: bob sees it in his list, its status and its log, and follows it to the end.
    let out = ci(
        &stack,
        ada,
        &project,
        &["submit", "--async", "--team", "platform", "test"],
    )
    .expect_code(0);
    let shared = job_id_in(out.stdout.trim());
    let done = wait_until_finished(&stack.server.url, &bob.key, &shared).await;
    assert_eq!(done.status, JobStatus::Passed);
    assert_eq!(done.team.as_deref(), Some("platform"));
    assert_eq!(done.submitted_by.as_deref(), Some("ada"));
    let list = ci(&stack, &bob, &project, &["list"]).expect_code(0);
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&shared))
        .unwrap_or_else(|| panic!("bob's list lacks the team's job:\n{}", list.stdout));
    assert!(row.contains("platform (ada)"), "{}", list.stdout);
    assert!(list.stdout.starts_with("JOB ID  "), "{}", list.stdout);
    let only = ci(
        &stack,
        &bob,
        &project,
        &["list", "--team", "platform", "--json"],
    )
    .expect_code(0);
    assert!(only.stdout.contains(&shared), "{}", only.stdout);
    let status = ci(&stack, &bob, &project, &["status", &shared]).expect_code(0);
    assert!(
        status.stdout.contains("Team:") && status.stdout.contains("platform (submitted by ada)"),
        "{}",
        status.stdout
    );
    let followed = ci(&stack, &bob, &project, &["wait", &shared, "--all"]).expect_code(0);
    assert!(followed.stdout.contains("passed"), "{}", followed.stdout);
    let teams = ci(&stack, &bob, &project, &["teams"]).expect_code(0);
    assert!(
        teams.stdout.contains("platform: ada, bob"),
        "{}",
        teams.stdout
    );

    // Ada's own jobs stay hers: bob does not see them.
    let out = ci(&stack, ada, &project, &["submit", "--async", "test"]).expect_code(0);
    let private = job_id_in(out.stdout.trim());
    wait_until_finished(&stack.server.url, &ada.key, &private).await;
    assert_eq!(
        status_of(&stack, &bob, &format!("jobs/{private}"), false).await,
        404
    );
    let bobs = ci(&stack, &bob, &project, &["list", "--json"]).expect_code(0);
    assert!(!bobs.stdout.contains(&private), "{}", bobs.stdout);

    // Everyone outside the team gets a 404 on every route of the team's job, as for no job.
    for (path, post) in job_routes(&shared) {
        assert_eq!(status_of(&stack, &eve, &path, post).await, 404, "{path}");
    }
    let eves = ci(&stack, &eve, &project, &["list", "--json"]).expect_code(0);
    assert!(!eves.stdout.contains(&shared), "{}", eves.stdout);

    // A member retries and cancels the team's jobs: the retry is bob's, in the team.
    let retried = ci(&stack, &bob, &project, &["retry", &shared]).expect_code(0);
    assert!(retried.stdout.contains("passed"), "{}", retried.stdout);
    let out = ci(
        &stack,
        ada,
        &slow,
        &["submit", "--async", "--team", "platform", "test"],
    )
    .expect_code(0);
    let running = job_id_in(out.stdout.trim());
    wait_for("the slow job to run", WAIT, || async {
        let job = job_view(&stack.server.url, &bob.key, &running).await;
        (job.status == JobStatus::Running).then_some(())
    })
    .await;

    // Bob follows the running job; his removal from the team ends the stream and every access.
    let response = client()
        .get(format!("{}/api/v1/jobs/{running}/events", stack.server.url))
        .bearer_auth(&bob.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    admin(
        &stack,
        &["team", "remove-member", "platform", "--email", &bob.email],
    );
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "bob's stream went on after his removal");
    assert_eq!(
        job_view(&stack.server.url, &ada.key, &running).await.status,
        JobStatus::Running,
        "the stream ended because bob left, not because the job did"
    );
    for (path, post) in job_routes(&running) {
        assert_eq!(status_of(&stack, &bob, &path, post).await, 404, "{path}");
    }
    let gone = ci(&stack, &bob, &project, &["status", &running]);
    assert_ne!(gone.code, Some(0), "{}", gone.stdout);
    // His own retry stays his.
    let bobs = ci(&stack, &bob, &project, &["list", "--json"]).expect_code(0);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&bobs.stdout).unwrap();
    assert_eq!(jobs.len(), 1, "{}", bobs.stdout);
    assert_eq!(jobs[0]["submitted_by"], "bob");

    // Ada, still a member, cancels it; deleting the team leaves her jobs hers.
    ci(&stack, ada, &project, &["cancel", &running]).expect_code(0);
    let cancelled = wait_until_finished(&stack.server.url, &ada.key, &running).await;
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    admin(&stack, &["team", "delete", "platform"]);
    let after = job_view(&stack.server.url, &ada.key, &shared).await;
    assert_eq!(after.team, None);
    assert_eq!(
        status_of(
            &stack,
            &bob,
            &format!("jobs/{}", jobs[0]["job_id"].as_str().unwrap()),
            false
        )
        .await,
        200
    );
}
