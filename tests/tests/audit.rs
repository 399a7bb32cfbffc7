//! The audit log as an administrator reads it: with the real `ci-admin`, `ci`, server and
//! controller, every administrative and user action — users and keys created, deactivated,
//! activated and revoked; sign-ins that worked and that were refused, a sign-out; jobs
//! submitted, cancelled and retried; triggers created, run and revoked, a push with a wrong
//! signature; webhooks added and removed; git credentials stored and removed — is in
//! `ci-admin audit --json` with its actor and where it came from, `--actor`, `--since` and
//! `--action` select from it, and no key, token, secret or password used shows anywhere in it.

#[path = "support/client.rs"]
mod support;

use std::process::{Command, Stdio};

use ci_tests::ci_common::keys::SecretKey;
use ci_tests::{bin, client, fixture, Controller, DbArg as _, Server, TestDb};
use serde_json::{json, Value};
use support::{job_id_in, run, CiEnv};

/// The operating system user `ci-admin` runs as in this test.
const OS_USER: &str = "auditor";

/// `ci-admin ARGS` on the test's database as [`OS_USER`]; its stdout (it must succeed).
fn admin(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(bin("ci-admin"))
        .args(db.db_args())
        .args(args)
        .env("USER", OS_USER)
        .env_remove("SUDO_USER")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ci-admin {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `ci-admin audit --json ARGS`: the entries.
fn audit(db: &TestDb, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&admin(db, &all)).expect("the audit log as a JSON array")
}

/// The value after `label` on a line of `text` (`API Key: ci_...`).
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_in_the_audit_log_with_its_actor_and_source_and_never_a_secret() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets.key");
    std::fs::write(&key_file, "7e".repeat(32)).unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();
    let server = Server::start_with(&db, &["--secrets-key-file", &key_file]);
    let _controller = Controller::start_with(
        &db,
        &[
            "--secrets-key-file",
            &key_file,
            "--git-allow",
            "git://127.0.0.1",
            "--webhook-allow",
            "http://127.0.0.1",
        ],
    );
    let http = client();
    let env = CiEnv::new();
    let passing = fixture("passing");

    // The administrator: a user, two keys, the user deactivated and activated, a key revoked.
    let created = admin(
        &db,
        &[
            "user",
            "create",
            "--name",
            "Ada",
            "--email",
            "ada@example.com",
        ],
    );
    let ada_id = field(&created, "ID:");
    let laptop = admin(
        &db,
        &[
            "key",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "laptop",
        ],
    );
    let key = field(&laptop, "API Key:");
    let spare = admin(
        &db,
        &[
            "key",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "spare",
        ],
    );
    let spare_key = field(&spare, "API Key:");
    let spare_id = field(&spare, "Key ID:");
    admin(&db, &["user", "deactivate", &ada_id]);
    admin(&db, &["user", "activate", &ada_id]);
    admin(&db, &["key", "revoke", &spare_id]);
    let admin_done = chrono::Utc::now();
    // Rows are stored to the microsecond: the next ones are surely later.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    // Sign-ins: with the key; with the revoked key and with a key nobody has (both refused);
    // then a sign-out.
    let sign_in = |api_key: String| {
        http.post(server.at("/api/v1/session"))
            .json(&json!({ "api_key": api_key }))
            .send()
    };
    let signed_in = sign_in(key.clone()).await.unwrap();
    assert_eq!(signed_in.status(), 201);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session_token = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(sign_in(spare_key.clone()).await.unwrap().status(), 401);
    let stranger = SecretKey::generate().expose().to_owned();
    assert_eq!(sign_in(stranger.clone()).await.unwrap().status(), 401);
    let signed_out = http
        .delete(server.at("/api/v1/session"))
        .header("cookie", &cookie)
        .header("origin", &server.url)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 204);

    // Jobs with the real `ci`: one submitted and retried, one cancelled.
    let ci = |args: &[&str]| run(env.ci(&server.url, &key, &passing, args)).expect_code(0);
    let submitted = job_id_in(ci(&["submit", "--async"]).stdout.trim());
    let slow = run(env.ci(
        &server.url,
        &key,
        &fixture("slow_lines"),
        &["submit", "--async"],
    ))
    .expect_code(0);
    let cancelled = job_id_in(slow.stdout.trim());
    ci(&["cancel", &cancelled]);
    let retried = ci(&["retry", &submitted, "--async"]);
    let retry = job_id_in(retried.stdout.trim().lines().last().unwrap());

    // Triggers: a run trigger started with its token, then revoked; a push trigger sent a push
    // with a wrong signature.
    let git = "git://127.0.0.1/app.git";
    let trigger = ci(&["triggers", "create", "--git", git, "--ref", "main"]).stdout;
    let (trigger_id, token) = (field(&trigger, "Trigger:"), field(&trigger, "Token:"));
    let started = http.post(field(&trigger, "URL:")).send().await.unwrap();
    assert_eq!(started.status(), 201);
    let started: Value = started.json().await.unwrap();
    ci(&["triggers", "revoke", &trigger_id]);
    let push = ci(&["triggers", "create", "--git", git, "--push"]).stdout;
    let (push_id, push_token, push_secret) = (
        field(&push, "Trigger:"),
        field(&push, "Token:"),
        field(&push, "Secret:"),
    );
    let forged = http
        .post(field(&push, "URL:"))
        .header("x-hub-signature-256", format!("sha256={}", "00".repeat(32)))
        .header("x-github-event", "push")
        .body(r#"{"ref":"refs/heads/main","after":"abc"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // A webhook (its URL's path and query would be a chat service's secret) added and removed.
    let hook = ci(&[
        "webhooks",
        "add",
        "http://127.0.0.1:9/services/T0/B0/pathsecret?token=querysecret",
    ]);
    let hook_id = field(&hook.stdout, "Webhook added:");
    let hook_secret = field(&hook.stdout, "Secret:");
    ci(&["webhooks", "remove", &hook_id]);

    // A git credential stored (its token from standard input) and removed.
    const GIT_TOKEN: &str = "glpat-audit-t0ken-never-shown";
    let mut set = env.ci(
        &server.url,
        &key,
        &passing,
        &[
            "git-credentials",
            "set",
            "127.0.0.1",
            "--username",
            "ada-bot",
        ],
    );
    let mut child = set
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{GIT_TOKEN}\n").as_bytes(),
    )
    .unwrap();
    let stored = child.wait_with_output().unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    ci(&["git-credentials", "remove", "127.0.0.1"]);

    // Everything is there, in order, with its actor, source, target and outcome.
    let log = audit(&db, &[]);
    let admin_actor = format!("admin:{OS_USER}");
    let row = |action: &str, outcome: &str, target: &str| -> &Value {
        log.iter()
            .find(|r| {
                r["action"] == action
                    && r["outcome"] == outcome
                    && r["target"].as_str().unwrap().contains(target)
            })
            .unwrap_or_else(|| panic!("no {action} {outcome} on {target:?} in\n{log:#?}"))
    };
    let by_admin = |action: &str, target: &str| {
        let r = row(action, "ok", target);
        assert_eq!(r["actor"], admin_actor, "{r}");
        assert_eq!(r["source"], "local", "{r}");
        assert_eq!(r["actor_user_id"], Value::Null, "{r}");
    };
    by_admin("user.create", "ada@example.com");
    by_admin("user.deactivate", "ada@example.com");
    by_admin("user.activate", "ada@example.com");
    by_admin("key.create", "laptop");
    by_admin("key.create", "spare");
    by_admin("key.revoke", "spare");
    let by_ada = |action: &str, outcome: &str, target: &str| {
        let r = row(action, outcome, target);
        assert_eq!(r["actor"], "Ada", "{r}");
        assert_eq!(r["actor_user_id"], ada_id.as_str(), "{r}");
        assert_eq!(r["source"], "127.0.0.1", "{r}");
        r.clone()
    };
    by_ada("session.sign_in", "ok", "laptop");
    let refused = by_ada("session.sign_in", "denied", "spare");
    assert_eq!(refused["detail"]["code"], "revoked_api_key", "{refused}");
    let unknown = row("session.sign_in", "denied", "unknown");
    assert_eq!(unknown["actor"], "-", "{unknown}");
    assert_eq!(unknown["source"], "127.0.0.1", "{unknown}");
    by_ada("session.sign_out", "ok", "session");
    let job = by_ada("job.submit", "ok", &submitted);
    assert_eq!(job["detail"]["source"], "upload", "{job}");
    by_ada("job.submit", "ok", &cancelled);
    by_ada("job.cancel", "ok", &cancelled);
    let again = by_ada("job.retry", "ok", &retry);
    assert_eq!(again["detail"]["retry_of"], submitted.as_str(), "{again}");
    by_ada("trigger.create", "ok", &trigger_id);
    let ran = by_ada("trigger.run", "ok", &trigger_id);
    assert_eq!(ran["detail"]["job_id"], started["job_id"], "{ran}");
    by_ada("trigger.revoke", "ok", &trigger_id);
    by_ada("trigger.create", "ok", &push_id);
    by_ada("trigger.run", "denied", &push_id);
    let added = by_ada("webhook.add", "ok", &hook_id);
    assert_eq!(added["detail"]["url"], "http://127.0.0.1:9", "{added}");
    by_ada("webhook.remove", "ok", &hook_id);
    let credential = by_ada("git_credential.set", "ok", "127.0.0.1");
    assert_eq!(credential["detail"]["username"], "ada-bot", "{credential}");
    by_ada("git_credential.remove", "ok", "127.0.0.1");
    let ids: Vec<i64> = log.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    // Filters: by actor (name, email or id), by time, by action or kind.
    let ada_rows = audit(&db, &["--actor", "Ada"]);
    assert!(ada_rows.iter().all(|r| r["actor"] == "Ada"));
    let ada_count = log.iter().filter(|r| r["actor"] == "Ada").count();
    assert_eq!(ada_rows.len(), ada_count);
    assert_eq!(audit(&db, &["--actor", "ada@example.com"]).len(), ada_count);
    assert_eq!(audit(&db, &["--actor", &ada_id]).len(), ada_count);
    let admin_rows = audit(&db, &["--actor", &admin_actor]);
    assert_eq!(admin_rows.len(), 6, "{admin_rows:#?}");
    let since = audit(&db, &["--since", &admin_done.to_rfc3339()]);
    assert!(!since.is_empty() && since.iter().all(|r| r["source"] != "local"));
    assert_eq!(since.len(), log.len() - 6);
    assert_eq!(audit(&db, &["--since", "1h"]).len(), log.len());
    let jobs = audit(&db, &["--action", "job"]);
    assert!(jobs
        .iter()
        .all(|r| r["action"].as_str().unwrap().starts_with("job.")));
    assert_eq!(jobs.len(), 4, "{jobs:#?}");
    assert_eq!(audit(&db, &["--action", "job.cancel"]).len(), 1);
    let newest = audit(&db, &["--limit", "2"]);
    assert_eq!(newest, log[log.len() - 2..]);

    // The table, for people, says the same.
    let table = admin(&db, &["audit"]);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("admin:auditor") && table.contains("session.sign_in"),
        "{table}"
    );

    // No secret anywhere: keys (used, revoked, unknown), the session's token, trigger tokens,
    // the push secret, the webhook's secret and its URL's path and query, the git token.
    let everything = format!("{}\n{table}", admin(&db, &["audit", "--json"]));
    for secret in [
        key.as_str(),
        &spare_key,
        &stranger,
        &session_token,
        &token,
        &push_token,
        &push_secret,
        &hook_secret,
        "pathsecret",
        "querysecret",
        GIT_TOKEN,
    ] {
        assert!(
            !everything.contains(secret),
            "{secret:?} is in the audit log:\n{everything}"
        );
    }
}

/// Team changes (by an administrator) and secret variables set and removed (by a member, for
/// the team) are in the log too, with their actors, and the secret's value is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_changes_and_secret_variables_are_in_the_audit_log() {
    const VALUE: &str = "team-secret-value-in-no-log";
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets.key");
    std::fs::write(&key_file, "7e".repeat(32)).unwrap();
    let server = Server::start_with(&db, &["--secrets-key-file", key_file.to_str().unwrap()]);
    let ada = db.user("Ada").await;
    let env = CiEnv::new();
    let here = tempfile::tempdir().unwrap();

    admin(&db, &["team", "create", "platform"]);
    admin(
        &db,
        &["team", "add-member", "platform", "--email", &ada.email],
    );
    let mut set = env.ci(
        &server.url,
        &ada.key,
        here.path(),
        &["secrets", "set", "DEPLOY_TOKEN", "--team", "platform"],
    );
    set.stdin(Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), VALUE.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    run(env.ci(
        &server.url,
        &ada.key,
        here.path(),
        &["secrets", "remove", "DEPLOY_TOKEN", "--team", "platform"],
    ))
    .expect_code(0);
    admin(
        &db,
        &["team", "remove-member", "platform", "--email", &ada.email],
    );
    admin(&db, &["team", "delete", "platform"]);

    let log = audit(&db, &[]);
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["actor"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
            )
        })
        .collect();
    let admin_actor = format!("admin:{OS_USER}");
    assert_eq!(
        actions,
        [
            ("team.create", admin_actor.as_str(), "team platform"),
            ("team.add_member", admin_actor.as_str(), "team platform"),
            ("secret.set", "Ada", "secret DEPLOY_TOKEN of team platform"),
            (
                "secret.remove",
                "Ada",
                "secret DEPLOY_TOKEN of team platform"
            ),
            ("team.remove_member", admin_actor.as_str(), "team platform"),
            ("team.delete", admin_actor.as_str(), "team platform"),
        ],
        "{log:#?}"
    );
    assert_eq!(log[1]["detail"]["email"], ada.email.as_str());
    assert!(!serde_json::to_string(&log).unwrap().contains(VALUE));
}
