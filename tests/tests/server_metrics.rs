//! `ci-server --metrics-addr`: Prometheus text on a port of its own (never on the API's), beside
//! the controller's, both scraped and parsed as a Prometheus server would.

use std::collections::BTreeMap;
use std::process::Command;

use ci_metrics::scrape::Page;
use ci_tests::{
    bin, client, fixture, listening_url, read_sse, remove_prefix_leftovers, require_docker, submit,
    test_image, wait_for, zip_dir, Proc, Server, TestDb, SERVER_LISTENING, WAIT,
};

const METRICS_AT: &str = "metrics on http://";

/// A server on ports the OS picks, with its metrics; returns it and its metrics URL.
fn server_with_metrics(db: &TestDb, args: &[&str]) -> (Server, String) {
    let mut cmd = Server::command(db, &["--metrics-addr", "127.0.0.1:0"]);
    cmd.args(args);
    let mut proc = Proc::spawn("ci-server", cmd);
    let lines = proc.wait_for_lines(&[SERVER_LISTENING, METRICS_AT], WAIT);
    let url = listening_url(&lines[0]).expect("the listening line names the URL");
    let metrics = listening_url(&lines[1]).expect("the metrics line names the URL");
    assert_ne!(url, metrics, "the metrics have a listener of their own");
    (Server { proc, url }, metrics)
}

/// Removes the controller's containers and volumes when the test ends, even when it fails.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        remove_prefix_leftovers(&self.0);
    }
}

/// A controller with its metrics; returns it and its metrics URL.
fn controller_with_metrics(db: &TestDb, prefix: &str) -> (Proc, String) {
    require_docker();
    let mut cmd = Command::new(bin("ci-controller"));
    cmd.args(ci_tests::DbArg::db_args(&db))
        .args(["--image", &test_image(), "--container-prefix", prefix])
        .args(["--interval", "0.05", "--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn("ci-controller", cmd);
    let lines = proc.wait_for_lines(&[METRICS_AT, "controller ready"], WAIT);
    let url = listening_url(&lines[0]).expect("the metrics line names the URL");
    (proc, url)
}

/// One scrape of `url`/metrics, parsed.
async fn scrape(url: &str) -> Page {
    let response = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        ci_metrics::CONTENT_TYPE,
        "the Prometheus text format"
    );
    let text = response.text().await.expect("metrics text");
    Page::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Scrapes `url` until `check` holds for the page, and returns that page.
async fn scrape_until(url: &str, what: &str, check: impl Fn(&Page) -> bool) -> Page {
    wait_for(what, WAIT, || async {
        let page = scrape(url).await;
        check(&page).then_some(page)
    })
    .await
}

/// `ci_http_requests_total` as {(method, route, status): count}.
fn requests(page: &Page) -> BTreeMap<(String, String, String), f64> {
    page.series("ci_http_requests_total")
        .map(|s| {
            let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            assert_eq!(s.labels.len(), 3, "method, route and status: {s:?}");
            ((label("method"), label("route"), label("status")), s.value)
        })
        .collect()
}

fn gauge(page: &Page, name: &str) -> f64 {
    page.value(name, &[])
        .unwrap_or_else(|| panic!("{name} is on the page"))
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_controller_metrics_move_with_requests_streams_uploads_and_jobs() {
    require_docker();
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    // Keep-alives every second: a stream whose client left is noticed within about a second.
    let (server, metrics) = server_with_metrics(&db, &["--keepalive-secs", "1"]);

    // The metrics port answers /metrics and /health, and nothing of the API; the API's port
    // has no /metrics.
    let health: serde_json::Value = client()
        .get(format!("{metrics}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let on_metrics_port = client()
        .get(format!("{metrics}/api/v1/jobs"))
        .bearer_auth(&user.key)
        .send()
        .await
        .unwrap();
    assert_eq!(on_metrics_port.status(), 404);
    let public = client().get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "no /metrics on the API's port");
    let body: serde_json::Value = public.json().await.expect("the API's JSON error");
    assert_eq!(body["code"], "not_found");

    let page = scrape(&metrics).await;
    assert_eq!(gauge(&page, "ci_sse_streams_open"), 0.0);
    assert_eq!(gauge(&page, "ci_hub_tails"), 0.0);
    assert!(gauge(&page, "ci_db_pool_connections") >= 1.0);
    assert!(gauge(&page, "ci_db_pool_idle_connections") <= gauge(&page, "ci_db_pool_connections"));

    // Requests: ok, unauthenticated (two job ids, one route), a missing job, an unknown route.
    let get = |path: &str, key: Option<&str>| {
        let mut request = client().get(server.at(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    assert_eq!(get("/health", None).await, 200);
    assert_eq!(get("/api/v1/jobs", Some(&user.key)).await, 200);
    assert_eq!(get(&format!("/api/v1/jobs/{}", ids[0]), None).await, 401);
    assert_eq!(get(&format!("/api/v1/jobs/{}", ids[1]), None).await, 401);
    assert_eq!(
        get(&format!("/api/v1/jobs/{}", ids[2]), Some(&user.key)).await,
        404
    );
    assert_eq!(get(&format!("/no/such/{}", ids[0]), None).await, 404);

    // Uploads: one that is not a zip (refused), one without a key (not an upload refusal: the
    // caller is), and one accepted.
    let upload = |bytes: Vec<u8>, key: Option<&str>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("project.zip"),
        );
        let mut request = client().post(server.at("/api/v1/jobs")).multipart(form);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.unwrap() }
    };
    let not_a_zip = b"this is not a zip archive".to_vec();
    let refused = upload(not_a_zip.clone(), Some(&user.key)).await;
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "not_a_zip");
    assert_eq!(upload(b"x".to_vec(), None).await.status(), 401);
    let project = zip_dir(&fixture("passing"));
    let job = submit(&server, &user.key, project.clone()).await;
    let job_id = job["job_id"].as_str().expect("job id").to_owned();

    let page = scrape(&metrics).await;
    for sample in &page.samples {
        for value in sample.labels.values() {
            assert!(
                !ids.iter()
                    .chain([&job_id])
                    .any(|id| value.contains(id.as_str())),
                "a raw path in a label: {sample:?}"
            );
        }
    }
    let expected: BTreeMap<(String, String, String), f64> = [
        ("GET", "unmatched", "404", 2.0),
        ("GET", "/health", "200", 1.0),
        ("GET", "/api/v1/jobs", "200", 1.0),
        ("GET", "/api/v1/jobs/{id}", "401", 2.0),
        ("GET", "/api/v1/jobs/{id}", "404", 1.0),
        ("POST", "/api/v1/jobs", "422", 1.0),
        ("POST", "/api/v1/jobs", "401", 1.0),
        ("POST", "/api/v1/jobs", "201", 1.0),
    ]
    .into_iter()
    .map(|(m, r, s, n)| ((m.into(), r.into(), s.into()), n))
    .collect();
    assert_eq!(
        requests(&page),
        expected,
        "every request, once, by route template"
    );
    let latency = |method, route| {
        page.value(
            "ci_http_request_duration_seconds_count",
            &[("method", method), ("route", route)],
        )
    };
    assert_eq!(latency("GET", "/api/v1/jobs/{id}"), Some(3.0));
    assert_eq!(latency("POST", "/api/v1/jobs"), Some(3.0));
    assert_eq!(
        page.value("ci_upload_rejections_total", &[("reason", "not_a_zip")]),
        Some(1.0)
    );
    assert_eq!(
        page.series("ci_upload_rejections_total").count(),
        1,
        "only the refused upload"
    );
    assert_eq!(page.value("ci_upload_size_bytes_count", &[]), Some(2.0));
    assert_eq!(
        page.value("ci_upload_size_bytes_sum", &[]),
        Some((not_a_zip.len() + project.len()) as f64)
    );

    // A stream of the queued job: open while its client reads, closed once the client left.
    let events = server.at(&format!("/api/v1/jobs/{job_id}/events"));
    let stream = client()
        .get(&events)
        .bearer_auth(&user.key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    scrape_until(&metrics, "an open stream and its tail", |page| {
        gauge(page, "ci_sse_streams_open") == 1.0 && gauge(page, "ci_hub_tails") == 1.0
    })
    .await;
    drop(stream);
    scrape_until(&metrics, "the left stream to close", |page| {
        gauge(page, "ci_sse_streams_open") == 0.0 && gauge(page, "ci_hub_tails") == 0.0
    })
    .await;

    // A stream that follows the job to its end, which a controller then runs.
    let stream = client()
        .get(&events)
        .bearer_auth(&user.key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    scrape_until(&metrics, "the second stream to be open", |page| {
        gauge(page, "ci_sse_streams_open") == 1.0
    })
    .await;
    let prefix = format!(
        "citest-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let _leftovers = Leftovers(prefix.clone());
    let (controller, controller_metrics) = controller_with_metrics(&db, &prefix);
    let seen = read_sse(stream, |e| e.event == "complete").await;
    let complete = seen.last().expect("events");
    assert_eq!(complete.event, "complete");
    assert_eq!(complete.data["status"], "passed", "{seen:?}");
    let page = scrape_until(&metrics, "the ended stream to close", |page| {
        gauge(page, "ci_sse_streams_open") == 0.0 && gauge(page, "ci_hub_tails") == 0.0
    })
    .await;
    assert_eq!(
        requests(&page).get(&(
            "GET".into(),
            "/api/v1/jobs/{id}/events".into(),
            "200".into()
        )),
        Some(&2.0)
    );

    let page = scrape_until(&controller_metrics, "the job to be counted", |page| {
        page.value("ci_jobs_finished_total", &[("outcome", "passed")]) == Some(1.0)
            && gauge(page, "ci_running_jobs") == 0.0
    })
    .await;
    assert_eq!(gauge(&page, "ci_queue_depth"), 0.0);
    assert_eq!(page.value("ci_job_duration_seconds_count", &[]), Some(1.0));
    assert_eq!(
        page.value("ci_jobs_finished_total", &[("outcome", "failed")]),
        Some(0.0)
    );
    assert!(gauge(&page, "ci_controller_epoch") >= 1.0);
    assert!(gauge(&page, "ci_db_pool_connections") >= 1.0);
    assert_eq!(page.kind("ci_jobs_finished_total"), Some("counter"));
    assert_eq!(
        page.kind("ci_job_duration_seconds_count"),
        Some("histogram")
    );

    drop(controller);
}
