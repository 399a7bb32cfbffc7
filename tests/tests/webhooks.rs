//! Outgoing webhooks as a user meets them: the real `ci`, server and controller, a job in
//! Docker, and a real HTTP receiver on 127.0.0.1 (`ci_tests::webhook_receiver`) that fails,
//! accepts or never answers.
//!
//! - A receiver that answers 500 twice, then 200, gets each event three times under one
//!   delivery id, signed so that the README's Python recipe and `ci_common::webhooks::verify`
//!   accept it; `ci webhooks deliveries` shows the three attempts.
//! - A receiver that never answers holds up neither the job nor the other delivery; its attempt
//!   ends at `--webhook-timeout` and is recorded.
//! - A loopback URL without the operator's allow rule, or an unknown event, is refused at
//!   `ci webhooks add`; another user can neither see nor remove a webhook.

#[path = "support/client.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ci_tests::ci_common::webhooks::{self, DeliveryList, DeliveryState, WebhookEvent};
use ci_tests::ci_common::JobStatus;
use ci_tests::webhook_receiver::{Answer, Received, Receiver};
use ci_tests::{client, fixture, repo_root, wait_for, Controller, Server, TestDb, TestUser};
use support::{job_id_in, job_view, run, CiEnv, Out};

/// Flags of a controller whose sender may reach the test's receiver, retrying quickly.
const ALLOW_RECEIVER: [&str; 4] = [
    "--webhook-allow",
    "http://127.0.0.1",
    "--webhook-retry-base",
    "50ms",
];

/// `ci ARGS` as `user` against `server`, in the `passing` fixture's folder.
fn ci(env: &CiEnv, server: &Server, user: &TestUser, args: &[&str]) -> Out {
    run(env.ci(&server.url, &user.key, &fixture("passing"), args))
}

/// `ci webhooks add URL` as `user`: the webhook's id and secret, read from what it printed.
fn add_webhook(env: &CiEnv, server: &Server, user: &TestUser, url: &str) -> (String, String) {
    let out = ci(env, server, user, &["webhooks", "add", url]).expect_code(0);
    assert!(
        out.stderr.contains("not shown again"),
        "the secret is said to be shown once:\n{}",
        out.stderr
    );
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} line in:\n{}", out.stdout))
            .trim()
            .to_owned()
    };
    let id = field("Webhook added:");
    let secret = field("Secret:");
    assert_eq!(field("Events:"), "job.started, job.finished");
    assert!(secret.starts_with(webhooks::SECRET_PREFIX), "{secret}");
    (id, secret)
}

/// `ci webhooks deliveries ID --json` as `user`.
fn deliveries(env: &CiEnv, server: &Server, user: &TestUser, id: &str) -> DeliveryList {
    let out = ci(env, server, user, &["webhooks", "deliveries", id, "--json"]).expect_code(0);
    serde_json::from_str(&out.stdout).expect("the deliveries as JSON")
}

/// `ci submit test` of the `passing` fixture as `user`, to its end: the job's id.
fn submit(env: &CiEnv, server: &Server, user: &TestUser) -> String {
    let out = ci(env, server, user, &["submit", "test"]).expect_code(0);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Job ID: "))
        .unwrap_or_else(|| panic!("no `Job ID:` line:\n{}", out.stderr));
    job_id_in(line)
}

/// Whether the README's Python recipe (the code block after `<!-- webhook-verify`) accepts
/// `header` for `body` with `secret`.
fn python_recipe_accepts(secret: &str, header: &str, body: &[u8]) -> bool {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let at = readme
        .find("<!-- webhook-verify")
        .expect("the README marks its verification recipe");
    let code = readme[at..]
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a python block after the marker")
        .0;
    assert!(
        code.trim().lines().count() <= 10,
        "the recipe stays short:\n{code}"
    );
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, body).unwrap();
    let program = format!(
        "{code}\nimport sys\nprint(verify(sys.argv[1], sys.argv[2], open(sys.argv[3], 'rb').read()))\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &program, secret, header])
        .arg(&body_path)
        .output()
        .expect("python3 runs (the prototype's tests need it too)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// The requests of one event about `job`, in the order they came.
fn requests_of<'a>(received: &'a [Received], event: &str, job: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.header("x-ci-event") == Some(event) && r.json()["job"]["id"] == job)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_twice_gets_each_event_three_times_under_one_signed_delivery_id() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let bob = db.user("bob").await;
    let server = Server::start(&db);
    let _controller = Controller::start_with(&db, &ALLOW_RECEIVER);
    let receiver = Receiver::start(|earlier| {
        if earlier < 2 {
            Answer::Status(500)
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let env = CiEnv::new();
    let (hook, secret) = add_webhook(&env, &server, &ada, &receiver.url);

    let job = submit(&env, &server, &ada);
    let list = wait_for(
        "both deliveries to be delivered",
        Duration::from_secs(60),
        || {
            let list = deliveries(&env, &server, &ada, &hook);
            let done = list.deliveries.len() == 2
                && list
                    .deliveries
                    .iter()
                    .all(|d| d.state == DeliveryState::Delivered);
            async move { done.then_some(list) }
        },
    )
    .await;

    let received = receiver.received();
    for event in WebhookEvent::ALL {
        let listed = list
            .deliveries
            .iter()
            .find(|d| d.event == event)
            .unwrap_or_else(|| panic!("no {event} delivery in {list:#?}"));
        assert_eq!(listed.job_id.to_string(), job);
        assert_eq!(
            (
                listed.attempts,
                listed.last_status,
                listed.last_error.as_deref()
            ),
            (3, Some(200), None),
            "{listed:#?}"
        );
        assert!(listed.delivered_at.is_some() && listed.next_attempt_at.is_none());
        let requests = requests_of(&received, event.as_str(), &job);
        assert_eq!(requests.len(), 3, "three attempts of {event}");
        let delivery = listed.id.to_string();
        for request in &requests {
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("POST", "/hook")
            );
            assert_eq!(request.header("x-ci-delivery"), Some(delivery.as_str()));
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("user-agent"), Some("ci-webhooks"));
            assert_eq!(request.body, requests[0].body, "the same bytes each time");
            let body = request.json();
            assert_eq!(body["id"], delivery.as_str());
            assert_eq!(body["event"], event.as_str());
            let signature = request.header("x-ci-signature").expect("a signature");
            webhooks::verify(
                &secret,
                signature,
                &request.body,
                chrono::Utc::now().timestamp(),
                Duration::from_secs(300),
            )
            .unwrap_or_else(|e| panic!("{event}: {e}"));
            assert!(!python_recipe_accepts(
                &secret,
                signature,
                b"{\"tampered\": true}"
            ));
        }
        let last = requests.last().unwrap();
        let signature = last.header("x-ci-signature").unwrap();
        assert!(
            python_recipe_accepts(&secret, signature, &last.body),
            "the README's recipe verifies {signature}"
        );
        let status = last.json()["job"]["status"].clone();
        let expected = match event {
            WebhookEvent::JobStarted => "running",
            WebhookEvent::JobFinished => "passed",
        };
        assert_eq!(status, expected, "{event}");
    }
    // The table a user reads.
    let table = ci(&env, &server, &ada, &["webhooks", "deliveries", &hook]).expect_code(0);
    let rows: Vec<&str> = table.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", table.stdout);
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3..5], ["delivered", "3"], "{row}");
        assert_eq!(cells.last(), Some(&"200"), "{row}");
    }

    // Another user neither sees nor removes it.
    let theirs = ci(&env, &server, &bob, &["webhooks", "list"]).expect_code(0);
    assert!(
        theirs.stdout.starts_with("No webhooks"),
        "{}",
        theirs.stdout
    );
    let peek = ci(&env, &server, &bob, &["webhooks", "deliveries", &hook]).expect_code(1);
    assert!(peek.stderr.contains("was not found"), "{}", peek.stderr);
    ci(&env, &server, &bob, &["webhooks", "remove", &hook]).expect_code(1);
    let response = client()
        .delete(server.at(&format!("/api/v1/webhooks/{hook}")))
        .bearer_auth(&bob.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "webhook_not_found");
    let mine = ci(&env, &server, &ada, &["webhooks", "list"]).expect_code(0);
    assert!(mine.stdout.contains(&hook) && mine.stdout.contains(&receiver.url));

    let removed = ci(&env, &server, &ada, &["webhooks", "remove", &hook]).expect_code(0);
    assert!(removed.stdout.contains("removed"), "{}", removed.stdout);
    let gone = ci(&env, &server, &ada, &["webhooks", "list", "--json"]).expect_code(0);
    let gone: serde_json::Value = serde_json::from_str(&gone.stdout).unwrap();
    assert_eq!(gone["webhooks"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_holds_up_neither_the_job_nor_other_deliveries() {
    const TIMEOUT: Duration = Duration::from_secs(20);
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let mut flags = ALLOW_RECEIVER.to_vec();
    flags.extend(["--webhook-timeout", "20s"]);
    let _controller = Controller::start_with(&db, &flags);
    let receiver = Receiver::start(|_| Answer::Hang).await;
    let env = CiEnv::new();
    let (hook, _) = add_webhook(&env, &server, &ada, &receiver.url);

    let job = submit(&env, &server, &ada);
    let ended = Instant::now();
    let view = job_view(&server.url, &ada.key, &job).await;
    assert_eq!(view.status, JobStatus::Passed, "{view:#?}");
    // The job ended, and `ci submit` with it, while the receiver still held its first delivery,
    // unanswered: nothing waited for it.
    let received = receiver.received();
    let started = requests_of(&received, "job.started", &job);
    assert_eq!(started.len(), 1, "job.started was sent as the job started");
    let list = deliveries(&env, &server, &ada, &hook);
    let first = list
        .deliveries
        .iter()
        .find(|d| d.event == WebhookEvent::JobStarted)
        .expect("a job.started delivery");
    assert_eq!(
        (first.state, first.attempts),
        (DeliveryState::Pending, 0),
        "its first attempt is still waiting for an answer: {first:#?}"
    );
    assert!(
        started[0].at.elapsed() < TIMEOUT,
        "the job ended within the attempt's time limit"
    );

    // The other delivery is not queued behind the hanging one.
    wait_for("job.finished to reach the receiver", TIMEOUT, || {
        let requests = receiver.received();
        let job = job.clone();
        async move { (!requests_of(&requests, "job.finished", &job).is_empty()).then_some(()) }
    })
    .await;
    assert!(
        ended.elapsed() < TIMEOUT,
        "job.finished arrived while job.started's attempt still hung"
    );

    // The hanging attempt ends at --webhook-timeout, recorded, and is tried again later.
    let timed_out = wait_for("the first attempt to time out", TIMEOUT * 2, || {
        let list = deliveries(&env, &server, &ada, &hook);
        async move {
            list.deliveries
                .into_iter()
                .find(|d| d.event == WebhookEvent::JobStarted && d.attempts >= 1)
        }
    })
    .await;
    assert_eq!(timed_out.state, DeliveryState::Pending, "{timed_out:#?}");
    assert_eq!(timed_out.last_status, None);
    let error = timed_out.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no answer within 20s") && error.contains("--webhook-timeout"),
        "{error}"
    );
    assert!(timed_out.next_attempt_at.is_some());
    let table = ci(&env, &server, &ada, &["webhooks", "deliveries", &hook]).expect_code(0);
    assert!(
        table.stdout.contains("no answer within 20s"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_url_without_an_allow_rule_and_an_unknown_event_are_refused() {
    // No controller has published a policy: the defaults (`--webhook-allow https://*`) apply.
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let env = CiEnv::new();
    let passing = fixture("passing");
    let here: &Path = &passing;
    let add = |url: &str| run(env.ci(&server.url, &ada.key, here, &["webhooks", "add", url]));

    let plain = add("http://127.0.0.1:9/hook").expect_code(1);
    assert!(
        plain.stderr.contains("is not allowed on this service")
            && plain.stderr.contains("https://*")
            && plain.stderr.contains("--webhook-allow"),
        "{}",
        plain.stderr
    );
    let loopback = add("https://127.0.0.1/hook").expect_code(1);
    assert!(
        loopback.stderr.contains("loopback") && loopback.stderr.contains("--webhook-allow"),
        "{}",
        loopback.stderr
    );
    let unknown = run(env.ci(
        &server.url,
        &ada.key,
        here,
        &[
            "webhooks",
            "add",
            "https://hooks.example.com/ci",
            "--event",
            "job.done",
        ],
    ))
    .expect_code(2);
    assert!(
        unknown.stderr.contains("job.finished"),
        "{}",
        unknown.stderr
    );
    // The API says the same to any client.
    let response = client()
        .post(server.at("/api/v1/webhooks"))
        .bearer_auth(&ada.key)
        .json(&serde_json::json!({"url": "https://hooks.example.com/ci", "events": ["job.done"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("job.started, job.finished"), "{error}");
    let response = client()
        .post(server.at("/api/v1/webhooks"))
        .bearer_auth(&ada.key)
        .json(&serde_json::json!({"url": "http://10.1.2.3/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "webhook_url_refused");

    let none = run(env.ci(&server.url, &ada.key, here, &["webhooks", "list"])).expect_code(0);
    assert!(none.stdout.starts_with("No webhooks"), "{}", none.stdout);
}
