//! Key scopes as a user meets them: a key made with `ci-admin key create --scope read` lists,
//! follows and downloads with the real `ci`, but cannot submit or cancel (a 403 that says what
//! to do); the per-route rule is checked in ci-server's own tests.

#[path = "support/client.rs"]
mod support;

#[path = "common_server/mod.rs"]
mod common_server;

use std::process::Command;

use ci_tests::{bin, fixture, DbArg as _};
use support::{run, wait_until_finished, Stack};

/// `ci-admin key create --scope SCOPE` for ada; the key it printed.
fn admin_key(stack: &Stack, scope: &str) -> String {
    let out = Command::new(bin("ci-admin"))
        .args((&stack.db.url).db_args())
        .args([
            "key",
            "create",
            "--email",
            &stack.ada.email,
            "--name",
            &format!("{scope} key"),
            "--scope",
            scope,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("Scope: {scope}")), "{stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("API Key: "))
        .expect("the key is printed")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_follows_and_lists_but_cannot_submit_or_cancel() {
    let stack = Stack::start().await;
    let project = fixture("passing");
    let id = stack.submit_async(&project);
    wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    let read = admin_key(&stack, "read");
    let as_reader = |args: &[&str]| run(stack.env.ci(&stack.server.url, &read, &project, args));

    let listed = as_reader(&["list"]).expect_code(0);
    assert!(listed.stdout.contains(&id[..8]), "{}", listed.stdout);
    let followed = as_reader(&["wait", &id, "--all"]).expect_code(0);
    assert!(followed.stdout.contains("passed"), "{}", followed.stdout);

    for args in [
        vec!["submit", "test"],
        vec!["cancel", id.as_str()],
        vec!["retry", id.as_str()],
    ] {
        let out = as_reader(&args);
        assert_ne!(out.code, Some(0), "{args:?} with a read key");
        assert!(
            out.stderr.contains("read-only") && out.stderr.contains("--scope submit"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // A key of scope submit (the default) still submits.
    let submit = admin_key(&stack, "submit");
    let out = run(stack
        .env
        .ci(&stack.server.url, &submit, &project, &["submit", "test"]));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
}
