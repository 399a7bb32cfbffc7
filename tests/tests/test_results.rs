//! Test results as users see them: the failing tests at the end of `ci submit` and `ci wait`,
//! `ci tests`, and the TESTS column of `ci list`, with the real `ci`, server, controller and
//! Docker running the fixtures' pytest.

#[path = "support/client.rs"]
mod support;

use ci_tests::fixture;
use serde_json::Value;
use support::{job_id_in, run, Out, Stack};

/// `ci submit test` in a fixture, expected to fail; returns its output and the job id.
fn submit_failing(stack: &Stack, name: &str) -> (Out, String) {
    let out = run(stack.ci(&fixture(name), &["submit", "test"])).expect_code(1);
    let id = job_id_in(
        out.stderr
            .lines()
            .find(|l| l.starts_with("Job ID: "))
            .expect("a Job ID line"),
    );
    (out, id)
}

/// The index of `needle` in `text`, failing with the text when it is missing.
fn find(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is missing from:\n{text}"))
}

/// Asserts that stderr holds the summary line and each failure, in order, before the final
/// line; and that stdout, the log, holds none of it.
fn assert_listed_before_the_end(out: &Out, id: &str, summary: &str, failures: &[&str]) {
    let stderr = &out.stderr;
    let mut at = find(stderr, &format!("[ci] tests: {summary}"));
    for failure in failures {
        let next = find(stderr, failure);
        assert!(next > at, "{failure:?} out of order in:\n{stderr}");
        at = next;
    }
    let end = find(stderr, &format!("✗ Job {id} failed"));
    assert!(
        at < end,
        "the failures come before the final line:\n{stderr}"
    );
    // pytest's own summary says `FAILED <nodeid> - <message>`; ours is not in the log.
    assert!(
        !out.stdout.contains("[ci] tests:")
            && failures
                .iter()
                .all(|f| !f.starts_with("FAILED") || !out.stdout.contains(f)),
        "stdout holds only the log:\n{}",
        out.stdout
    );
}

fn ci_tests_json(stack: &Stack, id: &str, extra: &[&str]) -> Value {
    let mut args = vec!["tests", id, "--json"];
    args.extend_from_slice(extra);
    let out = run(stack.ci(&fixture("failing"), &args)).expect_code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_is_shown_with_its_place_and_message_at_the_end_of_the_run() {
    let stack = Stack::start().await;
    let (out, id) = submit_failing(&stack, "failing");
    assert_listed_before_the_end(
        &out,
        &id,
        "1 failed, 1 passed in ",
        &[
            "FAILED tests/test_math.py::test_fails (tests/test_math.py:5): assert (1 + 1) == 3",
            "    >       assert 1 + 1 == 3",
            "    E       assert (1 + 1) == 3",
        ],
    );
    assert!(
        !out.stderr.contains("test_passes"),
        "only failures are listed:\n{}",
        out.stderr
    );

    // The API's JSON, all of it and only the failures.
    let all = ci_tests_json(&stack, &id, &[]);
    assert_eq!(
        all["counts"]["outcomes"],
        serde_json::json!({"failed": 1, "passed": 1}),
        "{all:#}"
    );
    let tests = all["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2, "{all:#}");
    assert_eq!(all["next_offset"], Value::Null);
    let failed = ci_tests_json(&stack, &id, &["--failed"]);
    let failed_tests = failed["tests"].as_array().unwrap();
    assert_eq!(failed_tests.len(), 1, "{failed:#}");
    let test = &failed_tests[0];
    assert_eq!(test["nodeid"], "tests/test_math.py::test_fails");
    assert_eq!(test["outcome"], "failed");
    assert_eq!(test["file"], "tests/test_math.py");
    assert_eq!(test["line"], 5);
    assert!(
        test["longrepr"]
            .as_str()
            .unwrap()
            .contains("E       assert (1 + 1) == 3"),
        "{test:#}"
    );

    // The human forms.
    let table = run(stack.ci(&fixture("failing"), &["tests", &id])).expect_code(0);
    let line = table
        .stdout
        .lines()
        .find(|l| l.contains("test_passes"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(
        line.starts_with("passed") && line.ends_with("tests/test_math.py:1"),
        "{line}"
    );
    let details = run(stack.ci(&fixture("failing"), &["tests", &id, "--failed"])).expect_code(0);
    assert!(
        details.stdout.contains("def test_fails():")
            && details
                .stdout
                .contains("tests/test_math.py:6: AssertionError"),
        "the whole failure text:\n{}",
        details.stdout
    );

    // `ci wait` on the ended job shows the same block before its final line.
    let waited = run(stack.ci(&fixture("failing"), &["wait", &id])).expect_code(1);
    assert_listed_before_the_end(
        &waited,
        &id,
        "1 failed, 1 passed in ",
        &["FAILED tests/test_math.py::test_fails (tests/test_math.py:5): assert (1 + 1) == 3"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realistic_project_lists_both_failures_and_ci_list_counts_them() {
    let stack = Stack::start().await;
    let (out, id) = submit_failing(&stack, "realistic_failing");
    assert_listed_before_the_end(
        &out,
        &id,
        "2 failed, 5 passed in ",
        &[
            "FAILED tests/test_budget.py::test_split_keeps_every_cent (tests/test_budget.py:19): \
             assert 999 == 1000",
            "    E        +  where 999 = sum([333, 333, 333])",
            "FAILED tests/test_budget.py::test_split_gives_the_remainder_to_the_first \
             (tests/test_budget.py:23): assert [250, 250, 250, 250] == [251, 250, 250, 250]",
        ],
    );

    let all = ci_tests_json(&stack, &id, &[]);
    assert_eq!(
        all["counts"]["outcomes"],
        serde_json::json!({"failed": 2, "passed": 5}),
        "the counts pytest gives by hand:\n{all:#}"
    );
    assert_eq!(all["tests"].as_array().unwrap().len(), 7);
    let nodeids: Vec<&str> = all["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["nodeid"].as_str().unwrap())
        .collect();
    assert!(
        nodeids.contains(&"tests/test_budget.py::test_to_cents[12.5-1250]"),
        "{nodeids:?}"
    );

    let list = run(stack.ci(&fixture("failing"), &["list"])).expect_code(0);
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(row.ends_with("5✓ 2✗"), "{}", list.stdout);
    assert!(
        list.stdout.lines().next().unwrap().ends_with("TESTS"),
        "{}",
        list.stdout
    );
}
