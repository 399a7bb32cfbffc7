//! Test results: what ci's pytest plugin reports for each test (one JSON object per line, see
//! `ci-controller/src/ci_results.py`), read with caps on records and text, and counted.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TestOutcome {
    Failed,
    /// An error in the test's setup or teardown (a fixture that raised).
    Error,
    /// Failed, then passed when run again.
    Flaky,
    Passed,
    Skipped,
    /// Expected to fail, and did.
    Xfailed,
    /// Expected to fail, but passed (a strict xfail that passes is `failed`).
    Xpassed,
}

impl TestOutcome {
    pub const ALL: [TestOutcome; 7] = [
        TestOutcome::Failed,
        TestOutcome::Error,
        TestOutcome::Flaky,
        TestOutcome::Passed,
        TestOutcome::Skipped,
        TestOutcome::Xfailed,
        TestOutcome::Xpassed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TestOutcome::Failed => "failed",
            TestOutcome::Error => "error",
            TestOutcome::Flaky => "flaky",
            TestOutcome::Passed => "passed",
            TestOutcome::Skipped => "skipped",
            TestOutcome::Xfailed => "xfailed",
            TestOutcome::Xpassed => "xpassed",
        }
    }

    /// Whether a user must look at it: `failed` and `error`.
    pub fn is_failure(self) -> bool {
        matches!(self, TestOutcome::Failed | TestOutcome::Error)
    }

    /// The one rule for a test run again: `self` on this attempt after `before` on the previous
    /// one. A test that failed (or errored) and now passes is `flaky`; anything else is what
    /// this attempt says.
    pub fn after_retry(self, before: TestOutcome) -> TestOutcome {
        if before.is_failure() && matches!(self, TestOutcome::Passed | TestOutcome::Xpassed) {
            TestOutcome::Flaky
        } else {
            self
        }
    }
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TestOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TestOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown test outcome {s:?}: use one of {}",
                    TestOutcome::ALL.map(TestOutcome::as_str).join(", ")
                )
            })
    }
}

/// One test's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestResult {
    /// pytest's node id, e.g. `tests/test_a.py::test_b[1]`.
    pub nodeid: String,
    pub file: Option<String>,
    /// 1-based line of the test's definition.
    pub line: Option<i64>,
    pub outcome: TestOutcome,
    pub duration_ms: i64,
    /// The failure's one-line message (`assert 1 == 2`), or why it was skipped.
    pub message: String,
    /// The failure's text as pytest printed it, cut at the cap.
    pub longrepr: String,
    /// The whole size of the failure's text, in characters (more than `longrepr` holds when cut).
    pub longrepr_chars: i64,
    /// Which run of the tests it is from: 1, then 2, 3, ... for retries of failed tests.
    #[serde(default = "first_attempt")]
    pub attempt: i64,
    /// How often the test failed in recent jobs of the same project (given with failing and
    /// flaky tests by `GET /api/v1/jobs/{id}/tests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<TestHistory>,
}

fn first_attempt() -> i64 {
    1
}

/// A test's recent history: it failed (on any attempt) in `failed` of the last `runs` jobs of
/// its project that ran it, counting the job it is shown for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestHistory {
    pub failed: u64,
    pub runs: u64,
}

impl fmt::Display for TestHistory {
    /// `failed 3 of the last 20 runs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = if self.runs == 1 {
            "the last run".to_owned()
        } else {
            format!("the last {} runs", self.runs)
        };
        write!(f, "failed {} of {runs}", self.failed)
    }
}

/// Caps on what is kept of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportCaps {
    /// Tests kept; later ones are counted but not stored.
    pub max_tests: usize,
    /// Characters kept of a test's failure text.
    pub max_longrepr_chars: usize,
    /// Characters kept of a test's message.
    pub max_message_chars: usize,
    /// Bytes of one report line read at most (longer lines are skipped and counted).
    pub max_line_bytes: usize,
}

impl Default for ReportCaps {
    fn default() -> Self {
        Self {
            max_tests: 100_000,
            max_longrepr_chars: 64 * 1024,
            max_message_chars: 1000,
            max_line_bytes: 1 << 20,
        }
    }
}

/// Counts of a job's tests per outcome, and their total duration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestCounts {
    /// Tests per outcome (outcomes with none are left out).
    pub outcomes: BTreeMap<TestOutcome, u64>,
    /// The tests' durations added up, in milliseconds (with fractions: many tests take less
    /// than one).
    pub duration_ms: f64,
}

impl TestCounts {
    /// Counts one test that took `duration_ms`.
    pub fn add(&mut self, outcome: TestOutcome, duration_ms: f64) {
        *self.outcomes.entry(outcome).or_default() += 1;
        self.duration_ms += duration_ms;
    }

    /// Takes back one test counted as `outcome` (it was run again).
    pub fn remove(&mut self, outcome: TestOutcome) {
        if let Some(n) = self.outcomes.get_mut(&outcome) {
            *n -= 1;
            if *n == 0 {
                self.outcomes.remove(&outcome);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn get(&self, outcome: TestOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Failed and erroring tests.
    pub fn failures(&self) -> u64 {
        self.get(TestOutcome::Failed) + self.get(TestOutcome::Error)
    }

    /// As pytest says it: `2 failed, 10 passed, 1 skipped in 1.23s`.
    pub fn summary_line(&self) -> String {
        let parts: Vec<String> = TestOutcome::ALL
            .iter()
            .filter(|o| self.get(**o) > 0)
            .map(|o| format!("{} {o}", self.get(*o)))
            .collect();
        let what = if parts.is_empty() {
            "no tests".to_owned()
        } else {
            parts.join(", ")
        };
        format!("{what} in {:.2}s", self.duration_ms / 1000.0)
    }
}

/// The `summary` event of a job: the counts and the slowest tests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestSummary {
    pub counts: TestCounts,
    /// The slowest tests, slowest first: `(nodeid, duration_ms)`.
    pub slowest: Vec<(String, i64)>,
    /// What was not kept of the report (past the caps, unreadable lines).
    #[serde(default)]
    pub dropped_tests: u64,
    #[serde(default)]
    pub unreadable_lines: u64,
}

/// What a report holds, within the caps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub results: Vec<TestResult>,
    pub summary: TestSummary,
}

/// How many of the slowest tests the summary names.
pub const SLOWEST: usize = 5;

/// One line of the plugin's report.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Test {
        nodeid: String,
        #[serde(default)]
        file: Option<String>,
        #[serde(default)]
        line: Option<i64>,
        outcome: TestOutcome,
        #[serde(default)]
        duration: f64,
        #[serde(default)]
        message: String,
        #[serde(default)]
        longrepr: String,
        #[serde(default)]
        longrepr_chars: Option<i64>,
    },
    Session {},
}

fn cut(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

/// Reads a report line by line (never the whole file at once), keeping at most the caps; lines
/// that are not a record of this format are counted, not fatal. Every test is counted, kept or
/// not.
pub fn read_report(mut input: impl BufRead, caps: &ReportCaps) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = std::io::Read::take(&mut input, caps.max_line_bytes as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        if line.len() > caps.max_line_bytes && !line.ends_with(b"\n") {
            // Too long: skip the rest of it.
            report.summary.unreadable_lines += 1;
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = std::io::Read::take(&mut input, 1 << 16).read_until(b'\n', &mut rest)?;
                if n == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(text) {
            Ok(Line::Test {
                nodeid,
                file,
                line,
                outcome,
                duration,
                message,
                longrepr,
                longrepr_chars,
            }) => {
                let chars = longrepr_chars.unwrap_or(longrepr.chars().count() as i64);
                let result = TestResult {
                    nodeid,
                    file,
                    line,
                    outcome,
                    duration_ms: (duration.max(0.0) * 1000.0).round() as i64,
                    message: cut(message, caps.max_message_chars),
                    longrepr: cut(longrepr, caps.max_longrepr_chars),
                    longrepr_chars: chars,
                    attempt: 1,
                    history: None,
                };
                report
                    .summary
                    .counts
                    .add(result.outcome, duration.max(0.0) * 1000.0);
                if report.results.len() < caps.max_tests {
                    report.results.push(result);
                } else {
                    report.summary.dropped_tests += 1;
                }
            }
            Ok(Line::Session {}) => {}
            Err(_) => report.summary.unreadable_lines += 1,
        }
    }
    // The slowest tests, kept as a running top list (no copy of every node id).
    let mut slowest: Vec<(&str, i64)> = Vec::with_capacity(SLOWEST + 1);
    for result in &report.results {
        let entry = (result.nodeid.as_str(), result.duration_ms);
        let at = slowest.partition_point(|(id, ms)| {
            (*ms, std::cmp::Reverse(*id)) > (entry.1, std::cmp::Reverse(entry.0))
        });
        if at < SLOWEST {
            slowest.insert(at, entry);
            slowest.truncate(SLOWEST);
        }
    }
    report.summary.slowest = slowest
        .into_iter()
        .map(|(id, ms)| (id.to_owned(), ms))
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"type": "test", "nodeid": "tests/test_a.py::test_ok", "file": "tests/test_a.py", "line": 3, "outcome": "passed", "duration": 0.5, "message": "", "longrepr": "", "longrepr_chars": 0}
{"type": "test", "nodeid": "tests/test_a.py::test_bad", "file": "tests/test_a.py", "line": 7, "outcome": "failed", "duration": 1.25, "message": "assert 1 == 2", "longrepr": "def test_bad():\n>       assert 1 == 2\nE       assert 1 == 2", "longrepr_chars": 52}
not json at all
{"type": "test", "nodeid": "tests/test_a.py::test_é", "outcome": "error", "duration": 0.001, "message": "RuntimeError: boom"}
{"type": "test", "nodeid": "tests/test_a.py::test_skip", "outcome": "skipped", "message": "Skipped: later"}
{"type": "session", "exitstatus": 1, "duration": 1.9}
"#;

    #[test]
    fn a_report_is_read_counted_and_bad_lines_are_counted_not_fatal() {
        let report = read_report(REPORT.as_bytes(), &ReportCaps::default()).unwrap();
        assert_eq!(report.results.len(), 4);
        let counts = &report.summary.counts;
        assert_eq!(counts.get(TestOutcome::Passed), 1);
        assert_eq!(counts.get(TestOutcome::Failed), 1);
        assert_eq!(counts.get(TestOutcome::Error), 1);
        assert_eq!(counts.get(TestOutcome::Skipped), 1);
        assert_eq!(counts.failures(), 2);
        assert_eq!(counts.total(), 4);
        assert!(
            (counts.duration_ms - 1751.0).abs() < 1e-6,
            "{}",
            counts.duration_ms
        );
        assert_eq!(
            counts.summary_line(),
            "1 failed, 1 error, 1 passed, 1 skipped in 1.75s"
        );
        assert_eq!(report.summary.unreadable_lines, 1);
        assert_eq!(
            report.summary.slowest[0],
            ("tests/test_a.py::test_bad".into(), 1250)
        );
        let bad = &report.results[1];
        assert_eq!(
            (bad.file.as_deref(), bad.line),
            (Some("tests/test_a.py"), Some(7))
        );
        assert!(bad.longrepr.contains("assert 1 == 2"));
        assert_eq!(report.results[2].nodeid, "tests/test_a.py::test_é");
    }

    #[test]
    fn caps_hold_and_every_test_is_still_counted() {
        let caps = ReportCaps {
            max_tests: 2,
            max_longrepr_chars: 10,
            max_message_chars: 4,
            max_line_bytes: 300,
        };
        let long = format!(
            "{{\"type\": \"test\", \"nodeid\": \"t::huge\", \"outcome\": \"failed\", \"longrepr\": \"{}\"}}\n",
            "x".repeat(1000)
        );
        let input = format!("{REPORT}{long}");
        let report = read_report(input.as_bytes(), &caps).unwrap();
        assert_eq!(report.results.len(), 2);
        assert_eq!(report.summary.dropped_tests, 2);
        assert_eq!(
            report.summary.counts.total(),
            4,
            "the too-long line is unreadable"
        );
        assert_eq!(report.summary.unreadable_lines, 2);
        assert_eq!(report.results[1].message, "asse");
        assert_eq!(report.results[1].longrepr.chars().count(), 10);
        assert_eq!(report.results[1].longrepr_chars, 52);
        assert_eq!(read_report(&b""[..], &caps).unwrap(), Report::default());
    }

    #[test]
    fn the_slowest_tests_are_the_five_longest_ties_by_name() {
        let lines: String = [("a", 5), ("c", 9), ("b", 9), ("d", 1), ("e", 7), ("f", 3), ("g", 8)]
            .iter()
            .map(|(id, ms)| {
                format!(
                    "{{\"type\": \"test\", \"nodeid\": \"{id}\", \"outcome\": \"passed\", \"duration\": {}}}\n",
                    *ms as f64 / 1000.0
                )
            })
            .collect();
        let report = read_report(lines.as_bytes(), &ReportCaps::default()).unwrap();
        let slowest: Vec<(&str, i64)> = report
            .summary
            .slowest
            .iter()
            .map(|(id, ms)| (id.as_str(), *ms))
            .collect();
        assert_eq!(slowest, [("b", 9), ("c", 9), ("g", 8), ("e", 7), ("a", 5)]);
    }

    #[test]
    fn outcomes_parse_and_name_themselves() {
        for outcome in TestOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<TestOutcome>().unwrap(), outcome);
        }
        assert!("broken"
            .parse::<TestOutcome>()
            .unwrap_err()
            .contains("passed"));
        assert_eq!(TestCounts::default().summary_line(), "no tests in 0.00s");
    }
}

/// A character XML 1.0 can hold (tab, newline, carriage return and everything from U+0020 but
/// U+FFFE and U+FFFF); others (control characters a test printed) are left out of JUnit XML.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
}

fn xml_text(text: &str) -> String {
    text.chars().filter(|c| xml_char(*c)).collect()
}

/// JUnit XML of a job's results (the format other tools read: Jenkins, GitLab), one `testsuite`
/// named `suite`. `results` holds every attempt's results, earlier attempts first; each test is
/// one `testcase` with `classname` (its module path and class), `name`, `file`, `line` and `time`
/// in seconds, from its last attempt: `failed` tests hold a `failure`, `error` ones an `error`,
/// skipped and xfailed ones a `skipped`, each with the message and failure text. The failures
/// of earlier attempts are kept the way Maven Surefire writes re-runs: `flakyFailure` in a test
/// that then passed (counted as passed), `rerunFailure` in one that failed again.
pub fn junit_xml(suite: &str, results: &[TestResult]) -> String {
    use quick_xml::events::{BytesDecl, BytesText};
    use quick_xml::Writer;

    // Each test's attempts, in the order the tests first finished.
    let mut order: Vec<&str> = Vec::new();
    let mut attempts: std::collections::HashMap<&str, Vec<&TestResult>> =
        std::collections::HashMap::new();
    for result in results {
        let entry = attempts.entry(result.nodeid.as_str()).or_default();
        if entry.is_empty() {
            order.push(result.nodeid.as_str());
        }
        entry.push(result);
    }
    let last = |nodeid: &str| *attempts[nodeid].last().expect("a test has an attempt");
    let count = |f: fn(TestOutcome) -> bool| order.iter().filter(|n| f(last(n).outcome)).count();
    let failures = count(|o| o == TestOutcome::Failed);
    let errors = count(|o| o == TestOutcome::Error);
    let skipped = count(|o| matches!(o, TestOutcome::Skipped | TestOutcome::Xfailed));
    let seconds = |ms: f64| format!("{:.3}", ms / 1000.0);
    let total_ms: f64 = results.iter().map(|r| r.duration_ms as f64).sum();
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    let write = |writer: &mut Writer<Vec<u8>>| -> std::io::Result<()> {
        writer.write_event(quick_xml::events::Event::Decl(BytesDecl::new(
            "1.0",
            Some("UTF-8"),
            None,
        )))?;
        writer
            .create_element("testsuites")
            .write_inner_content(|w| {
                w.create_element("testsuite")
                    .with_attributes([
                        ("name", xml_text(suite).as_str()),
                        ("tests", order.len().to_string().as_str()),
                        ("failures", failures.to_string().as_str()),
                        ("errors", errors.to_string().as_str()),
                        ("skipped", skipped.to_string().as_str()),
                        ("time", seconds(total_ms).as_str()),
                    ])
                    .write_inner_content(|w| {
                        for nodeid in &order {
                            write_case(w, &attempts[nodeid])?;
                        }
                        Ok::<(), std::io::Error>(())
                    })?;
                Ok::<(), std::io::Error>(())
            })?;
        Ok(())
    };

    /// One `testcase` from a test's attempts (the last decides).
    fn write_case(w: &mut Writer<Vec<u8>>, attempts: &[&TestResult]) -> std::io::Result<()> {
        let (result, earlier) = attempts.split_last().expect("a test has an attempt");
        let (module, name) = match result.nodeid.rsplit_once("::") {
            Some((module, name)) => (module, name),
            None => ("", result.nodeid.as_str()),
        };
        let classname = module
            .replace(".py::", ".")
            .trim_end_matches(".py")
            .replace(['/', '\\'], ".")
            .replace("::", ".");
        let time = attempts.iter().map(|r| r.duration_ms).sum::<i64>() as f64 / 1000.0;
        let mut case = w.create_element("testcase").with_attributes([
            ("classname", xml_text(&classname).as_str()),
            ("name", xml_text(name).as_str()),
            ("time", format!("{time:.3}").as_str()),
        ]);
        if let Some(file) = &result.file {
            case = case.with_attribute(("file", xml_text(file).as_str()));
        }
        if let Some(line) = result.line {
            case = case.with_attribute(("line", line.to_string().as_str()));
        }
        let child = match result.outcome {
            TestOutcome::Failed => Some("failure"),
            TestOutcome::Error => Some("error"),
            TestOutcome::Skipped | TestOutcome::Xfailed => Some("skipped"),
            _ => None,
        };
        let rerun = if result.outcome.is_failure() {
            "rerunFailure"
        } else {
            "flakyFailure"
        };
        let reruns: Vec<&&TestResult> = earlier.iter().filter(|r| r.outcome.is_failure()).collect();
        if child.is_none() && reruns.is_empty() {
            case.write_empty()?;
            return Ok(());
        }
        case.write_inner_content(|w| {
            let mut element = |tag: &str, r: &TestResult| {
                w.create_element(tag)
                    .with_attribute(("message", xml_text(&r.message).as_str()))
                    .write_text_content(BytesText::new(&xml_text(&r.longrepr)))
                    .map(|_| ())
            };
            if let Some(child) = child {
                element(child, result)?;
            }
            for earlier in reruns {
                element(rerun, earlier)?;
            }
            Ok::<(), std::io::Error>(())
        })?;
        Ok(())
    }

    write(&mut writer).expect("writing XML into memory cannot fail");
    String::from_utf8(writer.into_inner()).expect("the XML is UTF-8")
}

#[cfg(test)]
mod junit_tests {
    use super::*;

    fn result(nodeid: &str, outcome: TestOutcome, message: &str, longrepr: &str) -> TestResult {
        TestResult {
            nodeid: nodeid.into(),
            file: Some("tests/test_a.py".into()),
            line: Some(3),
            outcome,
            duration_ms: 1500,
            message: message.into(),
            longrepr: longrepr.into(),
            longrepr_chars: longrepr.chars().count() as i64,
            attempt: 1,
            history: None,
        }
    }

    #[test]
    fn junit_xml_is_valid_xml_with_the_counts_and_no_control_characters() {
        let results = [
            result("tests/test_a.py::test_ok", TestOutcome::Passed, "", ""),
            result(
                "tests/test_a.py::TestBox::test_bad[1]",
                TestOutcome::Failed,
                "assert <1> & 2",
                "E  bell\u{7} and nul\u{0} ✓",
            ),
            result("tests/test_a.py::test_err", TestOutcome::Error, "boom", "x"),
            result(
                "tests/test_a.py::test_skip",
                TestOutcome::Skipped,
                "later",
                "",
            ),
        ];
        let xml = junit_xml("ci job 1", &results);
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        assert!(!xml.contains('\u{7}') && !xml.contains('\u{0}'));
        assert!(xml.contains("✓"));
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut cases, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
        loop {
            match reader.read_event().expect("valid XML") {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    match e.name().as_ref() {
                        b"testcase" => cases += 1,
                        b"failure" => failures += 1,
                        b"error" => errors += 1,
                        b"skipped" => skipped += 1,
                        b"testsuite" => {
                            let attr = |name: &[u8]| {
                                e.try_get_attribute(name)
                                    .unwrap()
                                    .unwrap()
                                    .unescape_value()
                                    .unwrap()
                                    .into_owned()
                            };
                            assert_eq!(attr(b"tests"), "4");
                            assert_eq!(attr(b"failures"), "1");
                            assert_eq!(attr(b"errors"), "1");
                            assert_eq!(attr(b"skipped"), "1");
                            assert_eq!(attr(b"time"), "6.000");
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        assert_eq!((cases, failures, errors, skipped), (4, 1, 1, 1));
        assert!(xml.contains("classname=\"tests.test_a.TestBox\""), "{xml}");
        assert!(xml.contains("name=\"test_bad[1]\""), "{xml}");
        assert!(
            xml.contains("message=\"assert &lt;1&gt; &amp; 2\""),
            "{xml}"
        );
    }

    #[test]
    fn earlier_attempts_are_kept_as_flaky_and_rerun_failures() {
        let retried = |r: TestResult, attempt| TestResult { attempt, ..r };
        let results = [
            result("t.py::test_flaky", TestOutcome::Failed, "first", "E 1"),
            result("t.py::test_broken", TestOutcome::Failed, "once", "E 2"),
            result("t.py::test_ok", TestOutcome::Passed, "", ""),
            retried(result("t.py::test_flaky", TestOutcome::Flaky, "", ""), 2),
            retried(
                result("t.py::test_broken", TestOutcome::Failed, "twice", "E 3"),
                2,
            ),
        ];
        let xml = junit_xml("s", &results);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(
            xml.contains("<flakyFailure message=\"first\">E 1</flakyFailure>"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"twice\">E 3</failure>"),
            "{xml}"
        );
        assert!(
            xml.contains("<rerunFailure message=\"once\">E 2</rerunFailure>"),
            "{xml}"
        );
        assert_eq!(
            TestOutcome::Passed.after_retry(TestOutcome::Failed),
            TestOutcome::Flaky
        );
        assert_eq!(
            TestOutcome::Passed.after_retry(TestOutcome::Error),
            TestOutcome::Flaky
        );
        assert_eq!(
            TestOutcome::Failed.after_retry(TestOutcome::Failed),
            TestOutcome::Failed
        );
        assert_eq!(
            TestOutcome::Skipped.after_retry(TestOutcome::Failed),
            TestOutcome::Skipped
        );
    }
}
