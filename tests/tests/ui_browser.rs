//! The web UI (`/ui/`) in a real headless Chromium, against the real server, controller, `ci`
//! and Docker: sign in with a key, a job submitted with `ci` appearing in the list and streaming
//! its log live, the list's status and task filters, a failing job showing its failing test
//! first, `#L` links, search across the whole log, cancelling from the page, a 1,000,000-line log
//! (first and last lines, and how long they take to show), and signing out ending the live
//! stream.
//!
//! One server, controller and browser are shared by the flows (one test function), so the whole
//! file runs in about a minute. Screenshots go to `target/ui-screenshots/`.

#[path = "support/client.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ci_tests::browser::Browser;
use ci_tests::ci_common::JobStatus;
use ci_tests::{fixture, submit, wait_for, zip_dir, Controller, Server, TestDb, TestUser, WAIT};
use serde_json::{json, Value};
use support::{job_id_in, job_view, CiEnv, CiProc, CI_TIMEOUT};

/// The whole browser test's limit.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The program's lines of the `million_lines` fixture.
const MILLION: usize = 1_000_000;

/// The rows of the log that are on screen (inside the log's box and the window, below the
/// job's header):
/// `[{seq, text, loaded, classes}]`.
const VISIBLE_ROWS: &str = r#"
const rows = (() => {
  const s = document.querySelector('.log-scroller');
  if (!s) return [];
  const box = s.getBoundingClientRect();
  // The job's sticky header covers the top of the window.
  const head = document.querySelector('.job-head');
  const top = Math.max(box.top, head ? head.getBoundingClientRect().bottom : 0);
  const bottom = Math.min(box.bottom, window.innerHeight);
  return [...s.querySelectorAll('.log-row')]
    .filter((r) => { const b = r.getBoundingClientRect(); return b.top >= top - 2 && b.bottom <= bottom + 2; })
    .map((r) => ({ seq: Number(r.dataset.seq), text: r.querySelector('.log-text').textContent,
                   loaded: r.dataset.loaded === '1', classes: r.className }));
})();
"#;

/// Where screenshots go: `target/ui-screenshots/`.
fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    // target/<profile>/deps/ui_browser-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the target folder")
        .to_owned();
    target.join("ui-screenshots")
}

/// Waits until a row on screen holds `needle` with its text loaded, and returns it.
async fn visible_row(browser: &Browser, needle: &str) -> Value {
    browser
        .wait_js(
            &format!("a log line with {needle:?} on screen"),
            &format!(
                "{VISIBLE_ROWS} return rows.find((r) => r.loaded && r.text.includes(arguments[0])) || null;"
            ),
            vec![json!(needle)],
        )
        .await
}

/// Waits until line `seq` is on screen with its text, and returns it.
async fn visible_seq(browser: &Browser, seq: i64) -> Value {
    browser
        .wait_js(
            &format!("log line {seq} on screen"),
            &format!("{VISIBLE_ROWS} return rows.find((r) => r.loaded && r.seq === arguments[0]) || null;"),
            vec![json!(seq)],
        )
        .await
}

/// Waits until the job page shows `status`.
async fn wait_status(browser: &Browser, status: &str) {
    browser
        .wait_js(
            &format!("the job's status {status}"),
            "const b = document.querySelector('#job-status .badge'); \
             return b && b.dataset.status === arguments[0];",
            vec![json!(status)],
        )
        .await;
}

async fn wait_finished(server: &Server, key: &str, id: &str, timeout: Duration) -> JobStatus {
    wait_for("the job to finish", timeout, || async {
        let job = job_view(&server.url, key, id).await;
        job.status.is_terminal().then_some(job.status)
    })
    .await
}

async fn wait_running(server: &Server, key: &str, id: &str) {
    wait_for("the job to run", WAIT, || async {
        let job = job_view(&server.url, key, id).await;
        (job.status == JobStatus::Running).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_in_a_real_browser() {
    tokio::time::timeout(TEST_TIMEOUT, flows())
        .await
        .expect("the browser test took longer than its limit");
}

async fn flows() {
    let started = Instant::now();
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    // A million lines plus the job's own events are past the default log cap.
    let _controller = Controller::start_with(
        &db,
        &["--log-cap-lines", "2000000", "--max-concurrent-jobs", "4"],
    );
    let env = CiEnv::new();
    let shots = screenshots();

    // The big log runs while the browser starts and the other flows go on.
    let million = submit(&server, &ada.key, zip_dir(&fixture("million_lines"))).await;
    let million = million["job_id"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    sign_in(&browser, &server, &ada).await;

    let live = live_job(&browser, &server, &ada, &env).await;
    lines_that_come_with_the_end_are_shown(&browser).await;
    browser.screenshot(&shots.join("jobs.png")).await;
    eprintln!(
        "ui_browser: live job {live} done after {:?}",
        started.elapsed()
    );

    let failing = failing_job(&browser, &server, &ada, &env, &shots).await;
    filters(&browser, &server, &failing, &live).await;
    eprintln!("ui_browser: failing job done after {:?}", started.elapsed());

    cancel_from_the_page(&browser, &server, &ada).await;
    eprintln!("ui_browser: cancel done after {:?}", started.elapsed());

    big_log(&browser, &server, &ada, &million, &shots).await;
    eprintln!(
        "ui_browser: 1,000,000 lines done after {:?}",
        started.elapsed()
    );

    sign_out_ends_the_stream(&browser, &server, &ada).await;
    eprintln!("ui_browser: all flows done after {:?}", started.elapsed());
    browser.close().await;
}

/// A log view that follows its log shows the lines that arrive together with the job's end: the
/// stream's last batch appends them and ends the view's live state before the browser draws a
/// frame. Drives the page's own `LogView` module in a box of 10 rows.
async fn lines_that_come_with_the_end_are_shown(browser: &Browser) {
    let range = browser
        .js(
            r#"return (async () => {
  const { LogView } = await import('/ui/assets/logview.js');
  const root = document.createElement('div');
  root.className = 'log';
  root.innerHTML = '<div class="log-scroller" style="height: 200px; overflow: auto">'
    + '<div class="log-spacer"></div><div class="log-rows"></div></div>';
  document.body.appendChild(root);
  const view = new LogView(root, { fetchLines: async () => [] });
  view.setLive(true);
  for (let seq = 1; seq <= 100; seq++) view.append(seq, `line ${seq}`);
  view.setFollow(true);
  // The last batch: ten lines, then the end, in one task.
  for (let seq = 101; seq <= 110; seq++) view.append(seq, `line ${seq}`);
  view.setLive(false);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const range = view.visibleRange();
  root.remove();
  return { range, follow: view.follow };
})();"#,
            vec![],
        )
        .await;
    assert_eq!(
        range["range"][1], 110,
        "the last line is on screen after the end: {range}"
    );
    assert_eq!(
        range["follow"], false,
        "following stops with the end: {range}"
    );
}

/// `/` leads to the sign-in page; a wrong key is refused with the server's message; the right
/// one signs in and lands on the jobs page.
async fn sign_in(browser: &Browser, server: &Server, ada: &TestUser) {
    browser.goto(&server.url).await;
    browser.find("#api-key").await;
    let url = browser.url().await;
    assert!(
        url.ends_with("/ui/signin?next=/ui/"),
        "not sent to the sign-in page: {url}"
    );
    let input = browser.find("#api-key").await;
    input
        .send_keys("ci_0000000000000000000000000000000000000000")
        .await
        .unwrap();
    browser.click("#signin-button").await;
    let error = browser.wait_text("#signin-error", "key").await;
    assert!(!error.is_empty());

    input.clear().await.unwrap();
    input.send_keys(&ada.key).await.unwrap();
    browser.click("#signin-button").await;
    browser.wait_text("#who", "ada").await;
    assert!(browser.url().await.ends_with("/ui/"));
}

/// A job submitted with `ci` appears in the list without a reload, and its page streams its
/// lines as they are printed.
async fn live_job(browser: &Browser, server: &Server, ada: &TestUser, env: &CiEnv) -> String {
    let mut ci = CiProc::spawn(env.ci(
        &server.url,
        &ada.key,
        &fixture("slow_lines"),
        &["submit", "test"],
    ));
    let id = job_id_in(&ci.wait_for_line("Job ID:", CI_TIMEOUT));
    let row = format!("tr[data-job=\"{id}\"]");
    browser.find(&row).await;
    browser
        .wait_js(
            "the new job running in the list",
            "return document.querySelector(arguments[0]).dataset.status === 'running'",
            vec![json!(row)],
        )
        .await;
    browser.click(&format!("{row} a.job-link")).await;
    browser.wait_text("#stream-state", "live").await;
    let first = visible_row(browser, "tick 2").await;
    // Lines keep arriving on the open page.
    let later = visible_row(browser, "tick 12").await;
    assert!(later["seq"].as_i64() > first["seq"].as_i64());
    wait_status(browser, "passed").await;
    browser.wait_text("#stream-state", "finished").await;
    visible_row(browser, "tick 25").await;
    ci.finish(CI_TIMEOUT).expect_code(0);
    // Back on the list, the job is there as it ended.
    browser.goto(&server.at("/ui/")).await;
    browser
        .wait_js(
            "the job passed in the list",
            "const r = document.querySelector(arguments[0]); return r && r.dataset.status === 'passed'",
            vec![json!(row)],
        )
        .await;
    id
}

/// A failing job's page shows its failing test before the log, with its failure; the log's
/// colours are rendered; `#L` links select and show a line; search lands on a match.
async fn failing_job(
    browser: &Browser,
    server: &Server,
    ada: &TestUser,
    env: &CiEnv,
    shots: &std::path::Path,
) -> String {
    let out = support::run(env.ci(
        &server.url,
        &ada.key,
        &fixture("failing"),
        &["submit", "test", "--async", "--", "--color=yes"],
    ))
    .expect_code(0);
    let id = job_id_in(out.stdout.trim());
    assert_eq!(
        wait_finished(server, &ada.key, &id, WAIT).await,
        JobStatus::Failed
    );
    browser.goto(&server.at(&format!("/ui/jobs/{id}"))).await;
    wait_status(browser, "failed").await;
    let nodeid = browser
        .wait_js(
            "the failing test",
            "const t = document.querySelector('#failures:not([hidden]) .test-failure'); \
             return t && t.dataset.nodeid;",
            vec![],
        )
        .await;
    assert_eq!(nodeid, "tests/test_math.py::test_fails");
    let failure = browser.text(".test-failure").await;
    assert!(failure.contains("assert 1 + 1 == 3"), "{failure}");
    let first = browser
        .js(
            "const f = document.getElementById('failures'); const l = document.getElementById('log'); \
             return !!(f.compareDocumentPosition(l) & Node.DOCUMENT_POSITION_FOLLOWING);",
            vec![],
        )
        .await;
    assert_eq!(first, json!(true), "the failing tests come before the log");
    // pytest's colours are styled spans, and no escape code is shown as text.
    visible_row(browser, "test_fails").await;
    let colours = browser
        .js(
            "return [...document.querySelectorAll('.log-text span')].map((s) => s.className).join(' ')",
            vec![],
        )
        .await;
    assert!(
        colours.as_str().unwrap().contains("ansi-fg-1"),
        "no red text in the log: {colours}"
    );
    let raw = browser
        .js(
            "return [...document.querySelectorAll('.log-text')].some((t) => t.textContent.includes('\\u001b'))",
            vec![],
        )
        .await;
    assert_eq!(raw, json!(false), "escape codes shown as text");
    browser.screenshot(&shots.join("job-failed.png")).await;

    // Search: the match is on screen and marked as the current one.
    let search = browser.find("#search-input").await;
    search.send_keys("assert 1 + 1 == 3").await.unwrap();
    browser.click("#search button[type=submit]").await;
    browser.wait_text("#search-count", "1 of").await;
    let seq: i64 = browser
        .js(
            "return Number(document.getElementById('search-count').dataset.seq)",
            vec![],
        )
        .await
        .as_i64()
        .unwrap();
    let row = visible_seq(browser, seq).await;
    assert!(
        row["text"].as_str().unwrap().contains("assert 1 + 1 == 3"),
        "{row}"
    );
    assert!(
        row["classes"].as_str().unwrap().contains("current-match"),
        "{row}"
    );

    // Clicking a line number makes a #L link; opening one selects and shows that line.
    browser
        .click(&format!(".log-row[data-seq=\"{seq}\"] .log-no"))
        .await;
    assert!(browser.url().await.ends_with(&format!("#L{seq}")));
    browser.goto(&server.at("/ui/")).await;
    browser.find("#jobs-body tr").await;
    browser
        .goto(&server.at(&format!("/ui/jobs/{id}#L{seq}")))
        .await;
    let row = visible_seq(browser, seq).await;
    assert!(
        row["classes"].as_str().unwrap().contains("selected"),
        "{row}"
    );
    id
}

/// The list's filters ask the server for jobs of one status or task, and stay in the address.
async fn filters(browser: &Browser, server: &Server, failing: &str, passed: &str) {
    browser.goto(&server.at("/ui/")).await;
    browser.find(&format!("tr[data-job=\"{passed}\"]")).await;
    let select = browser.find("#status-filter").await;
    select.select_by_value("failed").await.unwrap();
    browser
        .wait_js(
            "only failed jobs in the list",
            "const rows = [...document.querySelectorAll('#jobs-body tr')]; \
             return rows.every((r) => r.dataset.status === 'failed') \
               && rows.some((r) => r.dataset.job === arguments[0]);",
            vec![json!(failing)],
        )
        .await;
    assert!(browser.url().await.ends_with("/ui/?status=failed"));
    browser.goto(&server.at("/ui/?task=no-such-task")).await;
    browser
        .wait_text("#jobs-empty:not([hidden])", "No jobs match")
        .await;
    assert_eq!(
        browser
            .find("#task-filter")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("no-such-task")
    );
}

/// The cancel button of a running job stops it.
async fn cancel_from_the_page(browser: &Browser, server: &Server, ada: &TestUser) {
    let job = submit(server, &ada.key, zip_dir(&fixture("sleep_forever"))).await;
    let id = job["job_id"].as_str().unwrap().to_owned();
    browser.goto(&server.at(&format!("/ui/jobs/{id}"))).await;
    visible_row(browser, "collected 1 item").await;
    wait_status(browser, "running").await;
    browser.click("#cancel:not([hidden])").await;
    wait_status(browser, "cancelled").await;
    browser.wait_text("#stream-state", "finished").await;
    assert_eq!(
        job_view(&server.url, &ada.key, &id).await.status,
        JobStatus::Cancelled
    );
}

/// A 1,000,000-line job: the first lines show at once, End shows the last, a deep link into
/// the middle works, search finds a line near the end, and only a screenful of rows is ever in
/// the page.
async fn big_log(
    browser: &Browser,
    server: &Server,
    ada: &TestUser,
    id: &str,
    shots: &std::path::Path,
) {
    assert_eq!(
        wait_finished(server, &ada.key, id, Duration::from_secs(180)).await,
        JobStatus::Passed
    );
    let job = job_view(&server.url, &ada.key, id).await;
    assert_eq!(job.dropped_lines, 0);
    assert!(job.log_lines as usize > MILLION, "{} lines", job.log_lines);
    let last_seq = job.last_seq.expect("last_seq");

    browser.goto(&server.at(&format!("/ui/jobs/{id}"))).await;
    visible_seq(browser, 1).await;
    visible_row(browser, "line 0000001").await;
    let first_ms = browser.mark("ci:first-line").await;
    let rows = browser
        .js(
            "return document.querySelectorAll('.log-row').length",
            vec![],
        )
        .await;
    assert!(rows.as_u64().unwrap() < 200, "{rows} rows in the page");

    let end_clicked = browser.js("return performance.now()", vec![]).await;
    browser.click("#end").await;
    visible_seq(browser, last_seq).await;
    visible_row(browser, &format!("line {MILLION:07}")).await;
    let end_ms = browser.mark("ci:last-line").await - end_clicked.as_f64().unwrap();
    browser.screenshot(&shots.join("job-million.png")).await;

    // Straight to the last line from a link.
    browser.goto(&server.at("/ui/")).await;
    browser.find("#jobs-body tr").await;
    browser
        .goto(&server.at(&format!("/ui/jobs/{id}#L{last_seq}")))
        .await;
    visible_seq(browser, last_seq).await;
    let deep_ms = browser.mark("ci:last-line").await;

    let summary = format!(
        "1,000,000-line job ({last_seq} events): line 1 on screen {first_ms:.0} ms after navigation \
         start; the last line {end_ms:.0} ms after pressing End; a #L link to the last line shows it \
         {deep_ms:.0} ms after navigation start"
    );
    eprintln!("ui_browser: {summary}");
    std::fs::write(shots.join("first-paint.txt"), format!("{summary}\n")).unwrap();

    // The middle, by link.
    browser
        .goto(&server.at(&format!("/ui/jobs/{id}#L500000")))
        .await;
    let middle = visible_seq(browser, 500_000).await;
    assert!(middle["classes"].as_str().unwrap().contains("selected"));
    assert!(middle["text"].as_str().unwrap().starts_with("line 0"));

    // Search reads the whole log on the server.
    let search = browser.find("#search-input").await;
    search.send_keys("line 0999999").await.unwrap();
    browser.click("#search button[type=submit]").await;
    browser.wait_text("#search-count", "1 of 1").await;
    let row = visible_row(browser, "line 0999999").await;
    assert!(row["classes"].as_str().unwrap().contains("current-match"));
}

/// Signing out in another tab ends the session: the job page's live stream is closed by the
/// server and the page says so.
async fn sign_out_ends_the_stream(browser: &Browser, server: &Server, ada: &TestUser) {
    let job = submit(server, &ada.key, zip_dir(&fixture("sleep_forever"))).await;
    let id = job["job_id"].as_str().unwrap().to_owned();
    wait_running(server, &ada.key, &id).await;
    browser.goto(&server.at(&format!("/ui/jobs/{id}"))).await;
    visible_row(browser, "collected 1 item").await;
    browser.wait_text("#stream-state", "live").await;
    let job_tab = browser.client.window().await.unwrap();

    let other = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(other.handle).await.unwrap();
    browser.goto(&server.at("/ui/")).await;
    browser.wait_text("#who", "ada").await;
    browser.click("#signout").await;
    browser
        .wait_text("#banner:not([hidden])", "Signed out")
        .await;
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(job_tab).await.unwrap();

    // The job page finds out on its own: the server ended its stream.
    browser
        .wait_js(
            "the job page to show it is signed out",
            "return document.body.dataset.session === 'signed-out'",
            vec![],
        )
        .await;
    browser.wait_text("#stream-state", "closed").await;
    browser
        .wait_text("#banner:not([hidden])", "Signed out")
        .await;
    // And the pages ask for the key again; signing in goes on to the deep link, line and all.
    browser.goto(&server.at("/ui/")).await;
    browser.find("#api-key").await;
    browser.goto(&server.at(&format!("/ui/jobs/{id}#L3"))).await;
    browser.find("#api-key").await;
    let url = browser.url().await;
    assert!(
        url.contains(&format!("/ui/signin?next=/ui/jobs/{id}")) && url.ends_with("#L3"),
        "{url}"
    );
    browser.sign_in_here(&ada.key).await;
    let row = visible_seq(browser, 3).await;
    assert!(
        row["classes"].as_str().unwrap().contains("selected"),
        "{row}"
    );
    assert!(browser.url().await.ends_with(&format!("/ui/jobs/{id}#L3")));
}
