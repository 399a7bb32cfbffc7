//! Acceptance tests of issue 12, "Test results", as a user meets them: the real `ci`, server and
//! controller, pytest in Docker, and the fixtures `pytest-fixtures/results_*`.
//!
//! - `results_mix`: a project whose tests end in every way pytest knows, one of them flaky, one
//!   with 10 MB of failure text and one with characters XML cannot hold, run with a retry.
//! - `results_5000`: 5,000 tests, each counted.
//! - `results_history`: a failing test submitted again and again, with its history per project.

#[path = "support/client.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use ci_tests::fixture;
use quick_xml::events::Event;
use serde_json::{json, Value};
use support::{job_id_in, job_view, run, Out, Stack};

const MIX: &str = "tests/test_orders.py";
const DISCOUNT: &str = "tests/test_orders.py::test_discount_rounds_half_up";
const RELOAD: &str = "tests/test_orders.py::test_saved_order_reloads";
const GATEWAY: &str = "tests/test_orders.py::test_payment_gateway_answers";
const RECEIPT: &str = "tests/test_orders.py::test_receipt_lists_every_line";
const HEADER: &str = "tests/test_orders.py::test_receipt_header_renders";

/// How long one API request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// `ci ARGS` in `fixture`, expected to exit `code`; returns its output and the job id from its
/// `Job ID:` line.
fn submit(stack: &Stack, fixture_name: &str, args: &[&str], code: i32) -> (Out, String) {
    let mut all = vec!["submit", "test"];
    all.extend_from_slice(args);
    let out = run(stack.ci(&fixture(fixture_name), &all)).expect_code(code);
    let id = job_id_in(
        out.stderr
            .lines()
            .find(|l| l.starts_with("Job ID: "))
            .unwrap_or_else(|| panic!("no Job ID line:\n{}", out.stderr)),
    );
    (out, id)
}

/// `ci submit test --async ARGS` in `fixture`; returns the job id.
fn submit_async(stack: &Stack, fixture_name: &str, args: &[&str]) -> String {
    let mut all = vec!["submit", "test", "--async"];
    all.extend_from_slice(args);
    let out = run(stack.ci(&fixture(fixture_name), &all)).expect_code(0);
    job_id_in(out.stdout.trim())
}

/// `ci tests ID --json ARGS`, parsed.
fn ci_tests_json(stack: &Stack, id: &str, extra: &[&str]) -> Value {
    let mut args = vec!["tests", id, "--json"];
    args.extend_from_slice(extra);
    let out = run(stack.ci(&fixture("results_mix"), &args)).expect_code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// `ci ARGS` (not a submission) expected to exit 0; returns its stdout.
fn ci_stdout(stack: &Stack, args: &[&str]) -> String {
    run(stack.ci(&fixture("results_mix"), args))
        .expect_code(0)
        .stdout
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("http client")
}

/// `GET /api/v1/jobs/{id}/{path}` as ada: its content type and body.
async fn api_get(stack: &Stack, id: &str, path: &str) -> (String, String) {
    let response = http()
        .get(stack.server.at(&format!("/api/v1/jobs/{id}/{path}")))
        .bearer_auth(&stack.ada.key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "GET {path}: {body}");
    (content_type, body)
}

async fn api_tests(stack: &Stack, id: &str, query: &str) -> Value {
    let (_, body) = api_get(stack, id, &format!("tests?{query}")).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The test of `list` (a `TestList`'s JSON) with `nodeid`.
fn test_named<'a>(list: &'a Value, nodeid: &str) -> &'a Value {
    list["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["nodeid"] == nodeid)
        .unwrap_or_else(|| panic!("no {nodeid} in {list:#}"))
}

/// Every test of `list` as (node id, outcome, attempt).
fn outcomes(list: &Value) -> Vec<(String, String, i64)> {
    list["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["nodeid"].as_str().unwrap().to_owned(),
                t["outcome"].as_str().unwrap().to_owned(),
                t["attempt"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The 1-based line of `def NAME(` in a fixture's file: where the results say the test is.
fn def_line(fixture_name: &str, file: &str, name: &str) -> usize {
    let text = std::fs::read_to_string(fixture(fixture_name).join(file)).unwrap();
    text.lines()
        .position(|l| l.starts_with(&format!("def {name}(")))
        .unwrap_or_else(|| panic!("no def {name} in {file}"))
        + 1
}

/// The line of `text` that starts with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in:\n{text}"))
}

/// The index of `needle` in `text`, failing with the text when it is missing.
fn find(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is missing from:\n{text}"))
}

/// A JUnit report as a reader of the format sees it.
#[derive(Debug, Default)]
struct Junit {
    /// The attributes of its (one) `testsuite`.
    suite: HashMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug)]
struct Case {
    name: String,
    classname: String,
    /// `failure`, `error`, `skipped`, `flakyFailure` and `rerunFailure` elements, in order.
    children: Vec<Child>,
}

#[derive(Debug)]
struct Child {
    tag: String,
    message: String,
    text: String,
}

impl Junit {
    fn case(&self, name: &str) -> &Case {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no testcase {name}"))
    }

    fn suite_count(&self, attribute: &str) -> u64 {
        self.suite[attribute].parse().unwrap()
    }
}

impl Case {
    fn tags(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.tag.as_str()).collect()
    }
}

/// Parses JUnit XML with a real XML reader (end names checked, entities unescaped), failing the
/// test where it is not XML.
fn parse_junit(xml: &str) -> Junit {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut junit = Junit::default();
    let mut in_child = false;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("junit.xml is not XML near byte {at}: {e}"));
        match event {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let attributes: HashMap<String, String> = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("a well-formed attribute");
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().expect("an attribute value").into_owned(),
                        )
                    })
                    .collect();
                let tag = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                match tag.as_str() {
                    "testsuite" => junit.suite = attributes,
                    "testcase" => junit.cases.push(Case {
                        name: attributes["name"].clone(),
                        classname: attributes["classname"].clone(),
                        children: Vec::new(),
                    }),
                    "failure" | "error" | "skipped" | "flakyFailure" | "rerunFailure" => {
                        let case = junit.cases.last_mut().expect("inside a testcase");
                        case.children.push(Child {
                            tag,
                            message: attributes.get("message").cloned().unwrap_or_default(),
                            text: String::new(),
                        });
                        in_child = matches!(event, Event::Start(_));
                    }
                    _ => {}
                }
            }
            Event::End(_) => in_child = false,
            Event::Text(text) if in_child => {
                let text = text.unescape().expect("text with well-formed entities");
                let case = junit.cases.last_mut().unwrap();
                case.children.last_mut().unwrap().text.push_str(&text);
            }
            _ => {}
        }
    }
    junit
}

/// Characters XML 1.0 cannot hold (control characters but tab, newline and carriage return).
fn not_xml(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_is_counted_and_a_retry_keeps_both_attempts_of_a_flaky_test() {
    let stack = Stack::start().await;
    let (out, id) = submit(&stack, "results_mix", &["--retries", "1"], 1);

    // The counts, each test once by its last attempt: the flaky test passed on the retry; the
    // other failing tests (and the erroring one) failed on both attempts.
    let all = ci_tests_json(&stack, &id, &[]);
    let expected = json!({
        "failed": 3, "error": 1, "flaky": 1, "passed": 3,
        "skipped": 1, "xfailed": 1, "xpassed": 1
    });
    assert_eq!(all["counts"]["outcomes"], expected, "{all:#}");
    assert_eq!(all["next_offset"], Value::Null);
    let by_test: HashMap<String, (String, i64)> = outcomes(&all)
        .into_iter()
        .map(|(nodeid, outcome, attempt)| (nodeid, (outcome, attempt)))
        .collect();
    let want = |name: &str, outcome: &str, attempt: i64| {
        let nodeid = format!("{MIX}::{name}");
        assert_eq!(
            by_test.get(&nodeid),
            Some(&(outcome.to_owned(), attempt)),
            "{nodeid} in {all:#}"
        );
    };
    want("test_an_empty_order_costs_nothing", "passed", 1);
    want("test_total_adds_every_line", "passed", 1);
    want("test_discount_takes_off_its_percentage", "passed", 1);
    want("test_discount_rounds_half_up", "failed", 2);
    want("test_saved_order_reloads", "error", 2);
    want("test_receipt_as_pdf", "skipped", 1);
    want("test_price_rounding_in_floats", "xfailed", 1);
    want("test_totals_of_large_orders", "xpassed", 1);
    want("test_payment_gateway_answers", "flaky", 2);
    want("test_receipt_lists_every_line", "failed", 2);
    want("test_receipt_header_renders", "failed", 2);
    assert_eq!(all["tests"].as_array().unwrap().len(), 11, "{all:#}");
    assert_eq!(by_test.len(), 11, "each test once: {all:#}");
    let reload = test_named(&all, RELOAD);
    assert!(
        reload["message"]
            .as_str()
            .unwrap()
            .contains("ConnectionError: cannot reach the orders database"),
        "the fixture's error: {reload:#}"
    );
    assert_eq!(
        test_named(&all, &format!("{MIX}::test_receipt_as_pdf"))["message"],
        "Skipped: PDF receipts are not built yet"
    );

    // The end of `ci submit` (stderr): the counts, each failing test with its place and
    // message, the flaky test named, then the final line.
    let stderr = &out.stderr;
    let summary = find(
        stderr,
        "[ci] tests: 3 failed, 1 error, 1 flaky, 3 passed, 1 skipped, 1 xfailed, 1 xpassed in ",
    );
    let place = |name: &str| format!("({MIX}:{})", def_line("results_mix", MIX, name));
    let mut at = summary;
    for (word, nodeid, name, message) in [
        (
            "FAILED",
            DISCOUNT,
            "test_discount_rounds_half_up",
            "assert 849 == 850",
        ),
        (
            "FAILED",
            RECEIPT,
            "test_receipt_lists_every_line",
            "AssertionError: line 00000: 1 x 100 cents ...",
        ),
        (
            "FAILED",
            HEADER,
            "test_receipt_header_renders",
            // The escapes the test wrote are shown, not sent to the terminal.
            "AssertionError: the header holds escapes: \\x1b[31mCafé 日本 🚀\\x1b[0m\\x07\\x00",
        ),
        (
            "ERROR",
            RELOAD,
            "test_saved_order_reloads",
            "ConnectionError: cannot reach the orders database at db.internal:5432",
        ),
    ] {
        // In this order: each one is looked for after the one before.
        let header = format!("{word} {nodeid} {}", place(name));
        at += find(&stderr[at..], &header);
        let line = line_starting(&stderr[at..], &header);
        assert!(
            line.contains("[attempt 2]") && line.contains(message),
            "{line:?} names the last attempt and the message {message:?}"
        );
    }
    let flaky_line = format!("[ci] flaky (failed, then passed when run again): {GATEWAY}\n");
    let flaky_at = find(stderr, &flaky_line);
    let end = find(
        stderr,
        &format!("✗ Job {id} failed: some tests failed on every one of 2 attempts"),
    );
    assert!(
        at < flaky_at && flaky_at < end,
        "the failures, then the flaky test, then the final line:\n{stderr}"
    );
    assert!(
        !stderr.contains(&format!("FAILED {GATEWAY}")),
        "the flaky test is not listed as failing:\n{stderr}"
    );
    // 10 MB of failure text does not flood the end of the run: the message line is cut.
    assert!(
        stderr.len() < 32 * 1024,
        "the end of the run stays short ({} bytes)",
        stderr.len()
    );

    // The retry: a notice on stderr names attempt 2 of 2 and the 5 tests it runs again; the
    // log (stdout) ends with pytest's summary of the retry, which ran only those (the start of
    // the retry's log may be in the middle the log cap drops: pytest prints the 10 MB failure
    // twice per attempt, its text and its line in `-ra`'s short summary).
    find(
        stderr,
        &format!(
            "[ci] attempt 2 of 2: running 5 failed tests again: {DISCOUNT}, {RELOAD}, {GATEWAY}, \
             {RECEIPT}, {HEADER}\n"
        ),
    );
    let last_summary = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("====") && l.contains(" in "))
        .unwrap_or_else(|| panic!("no pytest summary line at the end of the log"));
    assert!(
        last_summary.contains("3 failed, 1 passed, 6 deselected, 1 error in "),
        "the retry ran the 5 failed tests: {last_summary}"
    );
    assert!(
        !out.stdout.contains("[ci]"),
        "stdout holds only the log:\n{}",
        &out.stdout[..out.stdout.len().min(2000)]
    );
    let job = job_view(&stack.server.url, &stack.ada.key, &id).await;
    let steps: Vec<(String, String)> = job
        .steps
        .unwrap()
        .iter()
        .map(|s| (s.name.clone(), s.state.to_string()))
        .collect();
    assert_eq!(
        steps,
        [
            ("test".to_owned(), "failed".to_owned()),
            ("retry-1".to_owned(), "failed".to_owned())
        ]
    );
    assert_eq!(job.project.as_deref(), Some("orders"), "[project].name");

    // Every attempt is kept: attempt 1 of the flaky test failed, attempt 2 is flaky.
    let every = api_tests(&stack, &id, "attempts=all&limit=1000").await;
    let attempts_of = |nodeid: &str| -> Vec<(String, i64)> {
        outcomes(&every)
            .into_iter()
            .filter(|(n, _, _)| n == nodeid)
            .map(|(_, outcome, attempt)| (outcome, attempt))
            .collect()
    };
    assert_eq!(
        attempts_of(GATEWAY),
        [("failed".to_owned(), 1), ("flaky".to_owned(), 2)],
        "{every:#}"
    );
    assert_eq!(
        attempts_of(DISCOUNT),
        [("failed".to_owned(), 1), ("failed".to_owned(), 2)]
    );
    assert_eq!(
        attempts_of(RELOAD),
        [("error".to_owned(), 1), ("error".to_owned(), 2)]
    );
    assert_eq!(every["tests"].as_array().unwrap().len(), 11 + 5);
    let first_try = every["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["nodeid"] == GATEWAY && t["attempt"] == 1)
        .unwrap();
    assert!(
        first_try["message"]
            .as_str()
            .unwrap()
            .contains("the payment gateway timed out (attempt 1)"),
        "{first_try:#}"
    );
    let flaky = test_named(&all, GATEWAY);
    assert_eq!(flaky["history"], json!({"failed": 1, "runs": 1}));

    // The 10 MB failure is stored cut, and says how long it was.
    let receipt = test_named(&all, RECEIPT);
    let kept = receipt["longrepr"].as_str().unwrap().chars().count() as i64;
    let whole = receipt["longrepr_chars"].as_i64().unwrap();
    assert_eq!(kept, 64 * 1024, "the failure text is cut at 64 KiB");
    assert!(whole > 9_500_000 && whole > kept, "{whole} characters");
    assert!(receipt["message"].as_str().unwrap().chars().count() <= 1000);
    let details = ci_stdout(&stack, &["tests", &id, "--failed"]);
    find(
        &details,
        &format!("… (cut: the first {kept} of {whole} characters were kept)"),
    );

    // The failure text with escapes and non-ASCII text is kept as pytest printed it.
    let header = test_named(&all, HEADER);
    let message = header["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "AssertionError: the header holds escapes: \u{1b}[31mCafé 日本 🚀\u{1b}[0m\u{7}\u{0}"
        ),
        "{message:?}"
    );

    // JUnit XML: valid XML without the characters it cannot hold, with the API's counts.
    let (content_type, xml) = api_get(&stack, &id, "junit.xml").await;
    assert_eq!(content_type, "application/xml; charset=utf-8");
    assert!(
        !xml.chars().any(not_xml),
        "junit.xml holds control characters"
    );
    let junit = parse_junit(&xml);
    let counts = &all["counts"]["outcomes"];
    let count = |outcome: &str| counts[outcome].as_u64().unwrap_or(0);
    assert_eq!(junit.cases.len(), 11);
    assert_eq!(junit.suite_count("tests"), 11);
    assert_eq!(junit.suite_count("failures"), count("failed"));
    assert_eq!(junit.suite_count("errors"), count("error"));
    assert_eq!(
        junit.suite_count("skipped"),
        count("skipped") + count("xfailed")
    );
    let gateway = junit.case("test_payment_gateway_answers");
    assert_eq!(gateway.classname, "tests.test_orders");
    assert_eq!(gateway.tags(), ["flakyFailure"], "{gateway:?}");
    assert!(gateway.children[0]
        .message
        .contains("the payment gateway timed out (attempt 1)"));
    assert_eq!(
        junit.case("test_discount_rounds_half_up").tags(),
        ["failure", "rerunFailure"]
    );
    assert_eq!(
        junit.case("test_saved_order_reloads").tags(),
        ["error", "rerunFailure"]
    );
    assert_eq!(junit.case("test_receipt_as_pdf").tags(), ["skipped"]);
    assert!(junit
        .case("test_totals_of_large_orders")
        .children
        .is_empty());
    let escapes = &junit.case("test_receipt_header_renders").children[0];
    assert_eq!(
        escapes.message,
        message.chars().filter(|c| !not_xml(*c)).collect::<String>(),
        "the message less what XML cannot hold"
    );
    assert!(escapes.message.contains("[31mCafé 日本 🚀[0m"));
    let receipt_case = &junit.case("test_receipt_lists_every_line").children[0];
    assert!(receipt_case.text.chars().count() as i64 <= kept);
    assert!(receipt_case.text.contains("line 00042: 1 x 142 cents"));

    // `ci list`: passed (flaky and xpassed count as passing), then failing.
    let list = ci_stdout(&stack, &["list"]);
    let row = line_starting(&list, &id);
    assert!(row.ends_with("5✓ 4✗"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flaky_test_passes_the_job_and_names_it_unless_the_job_fails_on_flaky_tests() {
    let stack = Stack::start().await;
    let only_the_flaky_test = ["--", "-k", "test_payment_gateway_answers"];
    let strict = submit_async(
        &stack,
        "results_mix",
        &[
            &["--retries", "1", "--fail-on-flaky"],
            &only_the_flaky_test[..],
        ]
        .concat(),
    );
    let (out, id) = submit(
        &stack,
        "results_mix",
        &[&["--retries", "1"], &only_the_flaky_test[..]].concat(),
        0,
    );
    let flaky_line = format!("[ci] flaky (failed, then passed when run again): {GATEWAY}\n");
    let at = find(&out.stderr, "[ci] tests: 1 flaky in ");
    let named = find(&out.stderr, &flaky_line);
    let end = find(&out.stderr, &format!("✓ Job {id} passed"));
    assert!(at < named && named < end, "{}", out.stderr);
    find(
        &out.stderr,
        &format!("[ci] 1 flaky test (failed, then passed when run again): {GATEWAY}\n"),
    );
    let table = ci_stdout(&stack, &["tests", &id]);
    let row = line_starting(&table, "flaky");
    assert!(
        row.contains(GATEWAY) && row.contains("attempt 2"),
        "{table}"
    );

    // The same test with --fail-on-flaky fails the job, which says why.
    let waited = run(stack.ci(&fixture("results_mix"), &["wait", &strict])).expect_code(1);
    find(&waited.stderr, &flaky_line);
    let last = waited.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "✗ Job {strict} failed: 1 flaky test (failed, then passed when run again): {GATEWAY}; \
             this job fails on flaky tests"
        )),
        "{}",
        waited.stderr
    );
    let job = job_view(&stack.server.url, &stack.ada.key, &strict).await;
    assert_eq!(job.status.to_string(), "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_tests_are_each_counted() {
    let stack = Stack::start().await;
    let (out, id) = submit(&stack, "results_5000", &[], 0);
    find(&out.stderr, "[ci] tests: 5000 passed in ");

    let all = ci_tests_json(&stack, &id, &[]);
    assert_eq!(all["counts"]["outcomes"], json!({"passed": 5000}));
    let tests = outcomes(&all);
    assert_eq!(tests.len(), 5000);
    assert!(tests.iter().all(|(_, outcome, _)| outcome == "passed"));
    let distinct: std::collections::HashSet<&str> =
        tests.iter().map(|(nodeid, _, _)| nodeid.as_str()).collect();
    assert_eq!(distinct.len(), 5000, "each test once");
    assert!(
        distinct.contains("tests/test_luhn.py::test_a_number_with_its_check_digit_is_valid[4999]")
    );

    let list = ci_stdout(&stack, &["list"]);
    assert!(line_starting(&list, &id).ends_with(" 5000✓"), "{list}");

    let (_, xml) = api_get(&stack, &id, "junit.xml").await;
    let junit = parse_junit(&xml);
    assert_eq!(junit.cases.len(), 5000);
    assert_eq!(
        ["tests", "failures", "errors", "skipped"].map(|a| junit.suite_count(a)),
        [5000, 0, 0, 0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_shows_how_often_it_failed_in_the_last_runs_of_its_project() {
    let stack = Stack::start().await;
    const FAILING: &str = "tests/test_numbers.py::test_numbers_follow_each_other";
    // Two earlier runs: one of the project "billing", one of the project the folder's
    // pyproject.toml names ("invoices"), which must not count.
    let first = submit_async(&stack, "results_history", &["--project", "billing"]);
    let other = submit_async(&stack, "results_history", &[]);
    for id in [&first, &other] {
        run(stack.ci(&fixture("results_history"), &["wait", id])).expect_code(1);
    }
    let (out, second) = submit(&stack, "results_history", &["--project", "billing"], 1);
    let header = line_starting(&out.stderr, &format!("FAILED {FAILING} "));
    assert!(
        header.contains("[failed 2 of the last 2 runs]"),
        "{}",
        out.stderr
    );

    let table = ci_stdout(&stack, &["tests", &second]);
    let row = line_starting(&table, "failed");
    assert!(
        row.contains(FAILING) && row.ends_with("failed 2 of the last 2 runs"),
        "{table}"
    );
    let json = ci_tests_json(&stack, &second, &[]);
    assert_eq!(
        test_named(&json, FAILING)["history"],
        json!({"failed": 2, "runs": 2})
    );
    let passing = test_named(
        &json,
        "tests/test_numbers.py::test_numbers_are_formatted_with_the_year",
    );
    assert_eq!(
        passing.get("history"),
        None,
        "passing tests carry no history"
    );

    // The other project's run counts only itself.
    let theirs = ci_tests_json(&stack, &other, &[]);
    assert_eq!(
        test_named(&theirs, FAILING)["history"],
        json!({"failed": 1, "runs": 1})
    );
    let table = ci_stdout(&stack, &["tests", &other]);
    assert!(!table.contains("of the last"), "{table}");
    let project = |id: &str| {
        let (url, key) = (stack.server.url.clone(), stack.ada.key.clone());
        let id = id.to_owned();
        async move { job_view(&url, &key, &id).await.project }
    };
    assert_eq!(project(&second).await.as_deref(), Some("billing"));
    assert_eq!(project(&other).await.as_deref(), Some("invoices"));
}
