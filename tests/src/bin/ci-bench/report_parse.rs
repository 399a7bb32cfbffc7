//! Scenario 8, test report parsing: `ci_common::results::read_report` with the default caps, on
//! reports in the format of `ci-controller/src/ci_results.py` generated here — a realistic
//! 5,000-test one, a ~50 MB one whose failures carry text near the plugin's 64 KiB cap, and one
//! twice that size. Needs neither Docker nor the service binaries.
//!
//! Every parse runs in a fresh `ci-bench --parse-report FILE` process, so that its memory is its
//! own: the figure is how far the process's peak resident memory (`VmHWM`, reset through
//! `/proc/self/clear_refs` just before the file is opened) rose above what it held then. A
//! counting `#[global_allocator]` would give heap bytes instead, but needs `unsafe`, which the
//! workspace forbids (`unsafe_code = "forbid"`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ci_tests::ci_common::results::{read_report, Report, ReportCaps, TestCounts, TestOutcome};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fixtures::hex;
use crate::scenarios::{Ctx, Findings};
use crate::stack::memory_of;
use crate::stats::{Goal, Metric, Unit};

/// Characters of failure text the plugin writes at most (`LONGREPR_MAX`).
const PLUGIN_LONGREPR_MAX: usize = 64 * 1024;
/// Tests kept in the run with a tight cap, to show the caps bound the memory.
const TIGHT_MAX_TESTS: usize = 1_000;
/// Parse rate the issue asks for, in MB/s.
const TARGET_MB_PER_SEC: f64 = 50.0;

// ---------------------------------------------------------------------------------------------
// The parse, in its own process

/// What one `ci-bench --parse-report FILE` process measured and read.
#[derive(Debug, Serialize, Deserialize)]
pub struct ParseRun {
    pub file_bytes: u64,
    pub seconds: f64,
    /// Resident memory just before the file was opened, and its high-water mark by the end of
    /// `read_report` (MB).
    pub rss_before_mb: f64,
    pub peak_mb: f64,
    /// Heap bytes the returned `Report` holds (string and vector capacities).
    pub kept_bytes: u64,
    pub kept_tests: usize,
    pub dropped_tests: u64,
    pub unreadable_lines: u64,
    pub counts: TestCounts,
    /// SHA-256 of every kept test (see [`hash_test`]).
    pub sha256: String,
}

impl ParseRun {
    fn mb_per_sec(&self) -> f64 {
        self.file_bytes as f64 / 1e6 / self.seconds
    }

    /// How far resident memory rose during the parse (MB).
    fn growth_mb(&self) -> f64 {
        self.peak_mb - self.rss_before_mb
    }

    fn kept_mb(&self) -> f64 {
        self.kept_bytes as f64 / 1e6
    }
}

/// `ci-bench --parse-report FILE [--parse-max-tests N]`: parses FILE once with the default caps
/// (but `max_tests`), prints a [`ParseRun`] as JSON.
pub fn child_main(path: &Path, max_tests: Option<usize>) -> ExitCode {
    match parse_once(path, max_tests) {
        Ok(run) => {
            println!(
                "{}",
                serde_json::to_string(&run).expect("a ParseRun serializes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ci-bench --parse-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_once(path: &Path, max_tests: Option<usize>) -> Result<ParseRun> {
    let caps = ReportCaps {
        max_tests: max_tests.unwrap_or(ReportCaps::default().max_tests),
        ..ReportCaps::default()
    };
    let pid = std::process::id();
    // Writing 5 resets the peak resident size (VmHWM) to the current one (Linux 4.0+). Without
    // it the peak is still this parse's: nothing before it took more than the process holds.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = memory_of(pid)?;
    let started = Instant::now();
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let report = read_report(BufReader::new(file), &caps)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let after = memory_of(pid)?;
    let mut hash = Sha256::new();
    for r in &report.results {
        hash_test(
            &mut hash,
            &r.nodeid,
            r.file.as_deref(),
            r.line,
            r.outcome,
            r.duration_ms,
            &r.message,
            &r.longrepr,
        );
    }
    Ok(ParseRun {
        file_bytes,
        seconds,
        rss_before_mb: before.rss,
        peak_mb: after.peak,
        kept_bytes: kept_bytes(&report),
        kept_tests: report.results.len(),
        dropped_tests: report.summary.dropped_tests,
        unreadable_lines: report.summary.unreadable_lines,
        counts: report.summary.counts.clone(),
        sha256: hex(&hash.finalize()),
    })
}

/// Heap bytes a report holds: its vectors' and strings' capacities (not the allocator's own
/// bookkeeping).
fn kept_bytes(report: &Report) -> u64 {
    let results =
        report.results.capacity() * std::mem::size_of::<ci_tests::ci_common::results::TestResult>();
    let strings: usize = report
        .results
        .iter()
        .map(|r| {
            r.nodeid.capacity()
                + r.file.as_ref().map_or(0, String::capacity)
                + r.message.capacity()
                + r.longrepr.capacity()
        })
        .sum();
    let slowest = &report.summary.slowest;
    let slowest = slowest.capacity() * std::mem::size_of::<(String, i64)>()
        + slowest.iter().map(|(id, _)| id.capacity()).sum::<usize>();
    (results + strings + slowest) as u64
}

/// What identifies a kept test, as generated and as read back.
#[allow(clippy::too_many_arguments)]
fn hash_test(
    hash: &mut Sha256,
    nodeid: &str,
    file: Option<&str>,
    line: Option<i64>,
    outcome: TestOutcome,
    duration_ms: i64,
    message: &str,
    longrepr: &str,
) {
    let line = line.map(|l| l.to_string()).unwrap_or_default();
    let duration = duration_ms.to_string();
    for part in [
        nodeid,
        file.unwrap_or(""),
        &line,
        outcome.as_str(),
        &duration,
        message,
        longrepr,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
}

/// Runs `ci-bench --parse-report path` and reads what it measured.
async fn parse_in_child(path: &Path, max_tests: Option<usize>) -> Result<ParseRun> {
    // This very binary, even if a build replaced the file since it started (`current_exe`
    // would then name a deleted file).
    let exe = match Path::new("/proc/self/exe") {
        p if p.exists() => p.to_owned(),
        _ => std::env::current_exe().context("cannot find ci-bench's own path")?,
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--parse-report").arg(path);
    if let Some(n) = max_tests {
        cmd.arg("--parse-max-tests").arg(n.to_string());
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let limit = Duration::from_secs(300);
    let output = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("parsing {} took longer than {limit:?}", path.display()))?
        .context("cannot start `ci-bench --parse-report`")?;
    if !output.status.success() {
        bail!(
            "`ci-bench --parse-report {}` failed ({}): {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "cannot read what `ci-bench --parse-report` printed: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The scenario

/// A generated report and what a parse of it must find.
struct Written {
    label: String,
    path: PathBuf,
    bytes: u64,
    tests: u64,
    /// Tests per outcome, and their durations, as written.
    counts: TestCounts,
    /// Failures (`failed`, `error`) whose text the plugin cut at its cap.
    cut: u64,
    sha256: String,
}

pub async fn run(ctx: Arc<Ctx>) -> Result<Findings> {
    let sizes = ctx.sizes.clone();
    let dir = tempfile::Builder::new()
        .prefix("reports-")
        .tempdir_in(&ctx.work)
        .context("cannot create a temp dir for the reports")?;
    let path = dir.path().to_owned();
    let reports = tokio::task::spawn_blocking(move || -> Result<Vec<Written>> {
        let big = sizes.parse_big_mb * 1_000_000;
        Ok(vec![
            write_typical(&path.join("typical.jsonl"), sizes.parse_tests, 1)?,
            write_large(&path.join("large.jsonl"), big, 2, "")?,
            write_large(&path.join("double.jsonl"), 2 * big, 3, "2×, ")?,
        ])
    })
    .await
    .context("generating the reports stopped")??;

    let mut f = Findings::default();
    let runs = ctx.sizes.parse_runs;
    let mut parses: Vec<Vec<ParseRun>> = reports.iter().map(|_| Vec::new()).collect();
    let mut tight = Vec::new();
    let double = &reports[2];
    for _ in 0..runs {
        for (report, into) in reports.iter().zip(parses.iter_mut()) {
            into.push(parse_in_child(&report.path, None).await?);
        }
        tight.push(parse_in_child(&double.path, Some(TIGHT_MAX_TESTS)).await?);
    }

    for (report, runs) in reports.iter().zip(&parses) {
        check_full_parse(&mut f, report, runs);
    }
    check_tight_parse(&mut f, double, &tight);

    for (i, (report, runs)) in reports.iter().zip(&parses).enumerate() {
        let label = &report.label;
        f.metrics.push(Metric::new(
            format!("{label}: parse time"),
            Unit::Ms,
            Goal::None,
            runs.iter().map(|r| r.seconds * 1000.0).collect(),
        ));
        f.metrics.push(Metric::new(
            format!("{label}: parse rate"),
            Unit::MbPerSec,
            Goal::AtLeast(TARGET_MB_PER_SEC),
            runs.iter().map(ParseRun::mb_per_sec).collect(),
        ));
        let kept = runs.first().map_or(0.0, ParseRun::kept_mb);
        f.metrics.push(
            Metric::new(
                format!("{label}: memory growth during the parse (VmHWM)"),
                Unit::Mb,
                Goal::None,
                runs.iter().map(ParseRun::growth_mb).collect(),
            )
            .note(format!(
                "bounded by the caps, not the file: file {}, results kept {}",
                Unit::Mb.format(report.bytes as f64 / 1e6),
                Unit::Mb.format(kept)
            )),
        );
        if i > 0 {
            f.metrics.push(
                Metric::new(
                    format!("{label}: growth beyond the kept results"),
                    Unit::Mb,
                    Goal::None,
                    runs.iter().map(|r| r.growth_mb() - r.kept_mb()).collect(),
                )
                .note("flat as the file doubles"),
            );
        }
    }
    let tight_kept = tight.first().map_or(0.0, ParseRun::kept_mb);
    f.metrics.push(
        Metric::new(
            format!(
                "{}, max_tests {}: memory growth",
                double.label,
                thousands(TIGHT_MAX_TESTS as u64)
            ),
            Unit::Mb,
            Goal::None,
            tight.iter().map(ParseRun::growth_mb).collect(),
        )
        .note(format!(
            "bounded by the caps: {} of {} tests kept ({})",
            thousands(TIGHT_MAX_TESTS as u64),
            thousands(double.tests),
            Unit::Mb.format(tight_kept)
        )),
    );

    for report in &reports {
        let outcomes: Vec<String> = TestOutcome::ALL
            .iter()
            .filter(|o| report.counts.get(**o) > 0)
            .map(|o| format!("{} {o}", thousands(report.counts.get(*o))))
            .collect();
        f.notes.push(format!(
            "{}: {} bytes, {} tests ({}); {} failure texts cut by the plugin at {} characters",
            report.label,
            thousands(report.bytes),
            thousands(report.tests),
            outcomes.join(", "),
            thousands(report.cut),
            thousands(PLUGIN_LONGREPR_MAX as u64),
        ));
    }
    f.notes.push(memory_note(&reports, &parses, &tight));
    drop(dir);
    Ok(f)
}

/// What the memory figures say about the target "bounded by the caps, not the file".
fn memory_note(reports: &[Written], parses: &[Vec<ParseRun>], tight: &[ParseRun]) -> String {
    let beyond =
        |runs: &[ParseRun]| median(runs.iter().map(|r| r.growth_mb() - r.kept_mb()).collect());
    let (single, double, capped) = (beyond(&parses[1]), beyond(&parses[2]), beyond(tight));
    let verdict = if double <= 1.25 * single {
        "it stayed flat as the file doubled".to_owned()
    } else {
        format!(
            "it grew {:.1}× from the smaller file to the larger ({} → {} tests kept), and was {} \
             with max_tests {} on the larger one: it follows the number of tests kept, not the \
             file's bytes",
            double / single,
            thousands(reports[1].tests),
            thousands(reports[2].tests),
            Unit::Mb.format(capped),
            thousands(TIGHT_MAX_TESTS as u64)
        )
    };
    let caps = ReportCaps::default();
    format!(
        "memory: the default caps keep every test of these reports (up to {} tests, {} characters \
         of failure text each), so the kept results, and the growth with them, follow the file; \
         with max_tests {} the {} file grew the process by {} only. Beyond the kept results the \
         parse needed {} ({}) and {} ({}): {verdict}.",
        thousands(caps.max_tests as u64),
        thousands(caps.max_longrepr_chars as u64),
        thousands(TIGHT_MAX_TESTS as u64),
        Unit::Mb.format(reports[2].bytes as f64 / 1e6),
        Unit::Mb.format(median(tight.iter().map(ParseRun::growth_mb).collect())),
        Unit::Mb.format(single),
        reports[1].label,
        Unit::Mb.format(double),
        reports[2].label,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Every parse of `report` with the default caps kept and counted exactly what was written.
fn check_full_parse(f: &mut Findings, report: &Written, runs: &[ParseRun]) {
    let n = runs.len();
    let counted = runs
        .iter()
        .filter(|r| same_counts(&r.counts, &report.counts))
        .count();
    f.check(
        counted == n,
        format!(
            "{}: {counted}/{n} parses counted the {} tests written, per outcome",
            report.label,
            thousands(report.tests)
        ),
    );
    let kept = runs
        .iter()
        .filter(|r| {
            r.kept_tests as u64 == report.tests
                && r.dropped_tests == 0
                && r.unreadable_lines == 0
                && r.sha256 == report.sha256
        })
        .count();
    f.check(
        kept == n,
        format!(
            "{}: {kept}/{n} parses kept every test as written (SHA-256 of node ids, files, lines, \
             outcomes, durations, messages, failure texts), no line unreadable",
            report.label
        ),
    );
}

/// Every parse with `max_tests` = [`TIGHT_MAX_TESTS`] kept that many and counted the rest.
fn check_tight_parse(f: &mut Findings, report: &Written, runs: &[ParseRun]) {
    let n = runs.len();
    let keep = TIGHT_MAX_TESTS as u64;
    let ok = runs
        .iter()
        .filter(|r| {
            r.kept_tests as u64 == keep
                && r.dropped_tests == report.tests - keep
                && same_counts(&r.counts, &report.counts)
        })
        .count();
    f.check(
        ok == n,
        format!(
            "{}, max_tests {}: {ok}/{n} parses kept {} tests and counted the other {}",
            report.label,
            thousands(keep),
            thousands(keep),
            thousands(report.tests - keep)
        ),
    );
}

fn same_counts(a: &TestCounts, b: &TestCounts) -> bool {
    a.outcomes == b.outcomes
        && (a.duration_ms - b.duration_ms).abs() <= 1e-6 * b.duration_ms.abs().max(1.0)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Report generation

/// A small deterministic generator (xorshift64*), so every run writes the same reports.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One test record as the plugin writes it.
struct Record {
    nodeid: String,
    file: String,
    line: i64,
    outcome: TestOutcome,
    /// Seconds, six decimals.
    duration: f64,
    message: String,
    longrepr: String,
    longrepr_chars: usize,
}

/// Writes records the way the plugin does (`json.dumps(record, ensure_ascii=False)`: `", "` and
/// `": "` separators, non-ASCII text as is), and remembers what a parse must find.
struct ReportWriter {
    out: BufWriter<File>,
    path: PathBuf,
    bytes: u64,
    tests: u64,
    counts: TestCounts,
    cut: u64,
    hash: Sha256,
    line: String,
}

fn json(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

impl ReportWriter {
    fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_owned(),
            bytes: 0,
            tests: 0,
            counts: TestCounts::default(),
            cut: 0,
            hash: Sha256::new(),
            line: String::new(),
        })
    }

    fn test(&mut self, r: &Record) -> Result<()> {
        self.line.clear();
        let _ = writeln!(
            self.line,
            "{{\"type\": \"test\", \"nodeid\": {}, \"file\": {}, \"line\": {}, \"outcome\": \"{}\", \
             \"duration\": {}, \"message\": {}, \"longrepr\": {}, \"longrepr_chars\": {}}}",
            json(&r.nodeid),
            json(&r.file),
            r.line,
            r.outcome,
            r.duration,
            json(&r.message),
            json(&r.longrepr),
            r.longrepr_chars
        );
        self.out.write_all(self.line.as_bytes())?;
        self.bytes += self.line.len() as u64;
        self.tests += 1;
        // What `read_report` derives from the record.
        self.counts.add(r.outcome, r.duration.max(0.0) * 1000.0);
        if r.longrepr_chars > r.longrepr.chars().count() {
            self.cut += 1;
        }
        hash_test(
            &mut self.hash,
            &r.nodeid,
            Some(&r.file),
            Some(r.line),
            r.outcome,
            (r.duration.max(0.0) * 1000.0).round() as i64,
            &r.message,
            &r.longrepr,
        );
        Ok(())
    }

    fn finish(mut self, label: String) -> Result<Written> {
        let duration = self.counts.duration_ms / 1000.0 + 0.5;
        let exitstatus = u8::from(self.counts.failures() > 0);
        let session =
            format!("{{\"type\": \"session\", \"exitstatus\": {exitstatus}, \"duration\": {duration:.6}}}\n");
        self.out.write_all(session.as_bytes())?;
        self.bytes += session.len() as u64;
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(Written {
            label,
            path: self.path,
            bytes: self.bytes,
            tests: self.tests,
            counts: self.counts,
            cut: self.cut,
            sha256: hex(&self.hash.finalize()),
        })
    }
}

const AREAS: [&str; 8] = [
    "api", "models", "cli", "db", "utils", "i18n", "billing", "search",
];
const VERBS: [&str; 10] = [
    "create", "update", "delete", "list", "parse", "render", "retry", "migrate", "export",
    "validate",
];
const NOUNS: [&str; 10] = [
    "job", "user", "invoice", "report", "token", "step", "artifact", "webhook", "schedule", "query",
];
const UNICODE: [&str; 8] = [
    "naïve-café",
    "日本語",
    "Ελληνικά",
    "emoji-🚀",
    "Zürich",
    "Ünïcödé",
    "Привет",
    "中文-测试",
];
const SKIPS: [&str; 4] = [
    "Skipped: requires a GPU",
    "Skipped: needs network access",
    "Skipped: not on this platform (win32 only)",
    "Skipped: slow test, run with --runslow",
];

/// A test's node id, file and line; the node id is unique (`i`), about one in eight has
/// non-ASCII characters.
fn test_id(rng: &mut Rng, i: u64) -> (String, String, i64) {
    let area = rng.pick(&AREAS);
    let noun = rng.pick(&NOUNS);
    let verb = rng.pick(&VERBS);
    let file = format!("tests/{area}/test_{noun}s.py");
    let class = if rng.below(3) == 0 {
        let mut c = noun.chars();
        let first = c.next().map(|ch| ch.to_ascii_uppercase()).unwrap_or('X');
        format!("::Test{first}{}", c.as_str())
    } else {
        String::new()
    };
    let name = match rng.below(16) {
        0 => format!("test_ünïcode_{verb}_{i}"),
        1 | 2 => format!("test_{verb}_{noun}[{}-{i}]", rng.pick(&UNICODE)),
        3..=7 => format!("test_{verb}_{noun}[{i}]"),
        8..=9 => format!(
            "test_{verb}_{noun}[case-{}-{i}]",
            if rng.below(2) == 0 { "True" } else { "False" }
        ),
        _ => format!("test_{verb}_{noun}_{i}"),
    };
    let line = 10 + rng.below(900) as i64;
    (format!("{file}{class}::{name}"), file, line)
}

fn duration(rng: &mut Rng, slow: bool) -> f64 {
    let micros = if slow {
        50_000 + rng.below(5_000_000)
    } else {
        200 + rng.below(40_000)
    };
    micros as f64 / 1e6
}

/// A pytest failure: a test frame, maybe frames in the code under test, the assertion, the
/// location line and maybe captured output. Returns (message, text).
fn traceback(rng: &mut Rng, file: &str, line: i64, setup: bool) -> (String, String) {
    let noun = rng.pick(&NOUNS);
    let id = rng.below(10_000);
    let mut t = String::new();
    if setup {
        let _ = write!(
            t,
            "file /w/tests/conftest.py, line {line}\n  @pytest.fixture\n  def {noun}_db(tmp_path):\n\
             \x20     path = tmp_path / \"{noun}.sqlite\"\n>     raise RuntimeError(f\"database unavailable: {{path}}\")\n\
             E     RuntimeError: database unavailable: /tmp/pytest-of-ci/pytest-0/{noun}{id}/{noun}.sqlite\n\n\
             /w/tests/conftest.py:{line}\n"
        );
        return (
            format!("RuntimeError: database unavailable: /tmp/pytest-of-ci/pytest-0/{noun}{id}/{noun}.sqlite"),
            t,
        );
    }
    let (got, want) = (400 + rng.below(100), 200 + rng.below(10));
    let _ = write!(
        t,
        "self = <tests.api.test_{noun}s.Test{noun} object at 0x7f3a{id:08x}>\nclient = <FlaskClient <Flask 'app'>>\n\
         {noun} = {{'id': {id}, 'name': 'zoë-{id}', 'tags': ['α', 'β'], 'path': 'C:\\\\data\\\\{noun}'}}\n\n\
         \x20   def test_update_{noun}(self, client, {noun}):\n\
         \x20       payload = {{\"name\": \"build-{id}\", \"steps\": [\"lint\", \"test\"], \"owner\": \"zoë\"}}\n\
         \x20       response = client.post(f\"/api/v1/{noun}s/{{ {noun}['id'] }}\", json=payload)\n"
    );
    let frames = rng.below(4);
    if frames == 0 {
        let _ = write!(
            t,
            ">       assert response.status_code == {want}\nE       AssertionError: assert {got} == {want}\n\
             E        +  where {got} = <Response 38 bytes [{got} BAD REQUEST]>.status_code\n\n{file}:{line}: AssertionError\n"
        );
    } else {
        let _ = writeln!(
            t,
            ">       {noun}.save(expect_version=3)\n\n{file}:{line}: "
        );
        for k in 0..frames {
            let _ = write!(
                t,
                "_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _\n\n\
                 self = <app.store.Store object at 0x7f3a{k:08x}>, version = 3\n\n\
                 \x20   def save(self, expect_version):\n\
                 \x20       current = self._load(self.id)\n\
                 \x20       if current.version != expect_version:\n\
                 >           raise ConflictError(f\"{noun} {{self.id}} changed since version {{expect_version}}\")\n\
                 E           app.store.ConflictError: {noun} {id} changed since version 3\n\n\
                 src/app/store.py:{}: ConflictError\n",
                60 + k * 7
            );
        }
    }
    let captured = rng.below(3) * rng.below(12);
    if captured > 0 {
        t.push_str(
            "----------------------------- Captured stdout call -----------------------------\n",
        );
        for k in 0..captured {
            let _ = writeln!(
                t,
                "2024-05-01 12:00:{:02},{:03} INFO\trequest id={id}-{k} path=\"/api/v1/{noun}s\" user=zoë status={got} ✓",
                k % 60,
                rng.below(1000)
            );
        }
    }
    let message = if frames == 0 {
        format!("AssertionError: assert {got} == {want}")
    } else {
        format!("app.store.ConflictError: {noun} {id} changed since version 3")
    };
    (message, t)
}

/// A failure whose text is a long assertion diff of about `chars` characters, cut at the
/// plugin's cap like the plugin does. Returns (message, text, characters before the cut).
fn long_failure(rng: &mut Rng, file: &str, line: i64, chars: usize) -> (String, String, usize) {
    let seed = rng.below(1_000_000);
    let mut t = format!(
        "    def test_export_matches_golden_file():\n\
         \x20       records = export_records(load(\"fixtures/records-{seed}.json\"))\n\
         >       assert records == golden(\"records.golden\")\n\
         E       AssertionError: assert [{{'id': 0, 'name': 'record-0 ✓', 'path': 'C:\\\\data\\\\r0', 'value': 0.0}}, ...] == [...]\n\
         E         \n\
         E         At index 1 diff: {{'value': 0.5}} != {{'value': 0.25}}\n\
         E         Full diff:\n\
         E           [\n"
    );
    let want = chars.min(PLUGIN_LONGREPR_MAX);
    let mut have = t.chars().count();
    let mut k = 0u64;
    while have < want {
        let row = format!(
            "E         -     {{'id': {k}, 'name': 'record-{k} ✓', 'path': 'C:\\\\data\\\\r{k}', 'value': {}.25}},\n\
             E         +     {{'id': {k}, 'name': 'record-{k} ✓', 'path': 'C:\\\\data\\\\r{k}', 'value': {}.5}},\n",
            seed + k,
            seed + k
        );
        have += row.chars().count();
        t.push_str(&row);
        k += 1;
    }
    let _ = write!(t, "E           ]\n\n{file}:{line}: AssertionError\n");
    let total = t.chars().count().max(chars);
    if let Some((at, _)) = t.char_indices().nth(PLUGIN_LONGREPR_MAX) {
        t.truncate(at);
    }
    let message = format!(
        "AssertionError: assert [{{'id': 0, 'name': 'record-0 ✓', 'path': 'C:\\\\data\\\\r0', 'value': {seed}.25}}, ...] == [...]"
    );
    (message, t, total)
}

fn record(rng: &mut Rng, i: u64, outcome: TestOutcome, long_chars: Option<usize>) -> Record {
    let (nodeid, file, line) = test_id(rng, i);
    let slow = rng.below(50) == 0;
    let (message, longrepr, longrepr_chars) = match (outcome, long_chars) {
        (TestOutcome::Failed, Some(chars)) => long_failure(rng, &file, line, chars),
        (TestOutcome::Failed | TestOutcome::Xfailed, _) => {
            let (m, t) = traceback(rng, &file, line, false);
            let n = t.chars().count();
            (m, t, n)
        }
        (TestOutcome::Error, _) => {
            let (m, t) = traceback(rng, &file, line, true);
            let n = t.chars().count();
            (m, t, n)
        }
        (TestOutcome::Skipped, _) => {
            let m = rng.pick(&SKIPS).to_owned();
            let n = m.chars().count();
            (m.clone(), m, n)
        }
        _ => (String::new(), String::new(), 0),
    };
    Record {
        nodeid,
        file,
        line,
        outcome,
        duration: duration(rng, slow),
        message,
        longrepr,
        longrepr_chars,
    }
}

/// A realistic report of `tests` tests: about 90% passed, 4% failed with multi-line
/// tracebacks, 0.5% errors in fixtures, 3% skipped, 2% xfailed, 0.5% xpassed.
fn write_typical(path: &Path, tests: usize, seed: u64) -> Result<Written> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    let mut w = ReportWriter::create(path)?;
    for i in 0..tests as u64 {
        let outcome = match rng.below(1000) {
            0..=899 => TestOutcome::Passed,
            900..=939 => TestOutcome::Failed,
            940..=944 => TestOutcome::Error,
            945..=974 => TestOutcome::Skipped,
            975..=994 => TestOutcome::Xfailed,
            _ => TestOutcome::Xpassed,
        };
        w.test(&record(&mut rng, i, outcome, None))?;
    }
    w.finish(format!("{}-test report", thousands(tests as u64)))
}

/// A report of at least `bytes` bytes: 94% passed, 2% skipped, 1% failed with a traceback, 3%
/// failed with a long assertion diff of 30,000 to 160,000 characters (most cut by the plugin at
/// 65,536).
fn write_large(path: &Path, bytes: u64, seed: u64, what: &str) -> Result<Written> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    let mut w = ReportWriter::create(path)?;
    let mut i = 0;
    while w.bytes < bytes {
        let r = match rng.below(100) {
            0..=93 => record(&mut rng, i, TestOutcome::Passed, None),
            94..=95 => record(&mut rng, i, TestOutcome::Skipped, None),
            96 => record(&mut rng, i, TestOutcome::Failed, None),
            _ => {
                let chars = 30_000 + rng.below(130_000) as usize;
                record(&mut rng, i, TestOutcome::Failed, Some(chars))
            }
        };
        w.test(&r)?;
        i += 1;
    }
    let label = format!(
        "{:.0} MB report ({what}{} tests)",
        w.bytes as f64 / 1e6,
        thousands(w.tests)
    );
    w.finish(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_reports_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let typical = write_typical(&dir.path().join("t.jsonl"), 300, 7).unwrap();
        let large = write_large(&dir.path().join("l.jsonl"), 2_000_000, 8, "").unwrap();
        for written in [typical, large] {
            let run = parse_once(&written.path, None).unwrap();
            assert_eq!(run.kept_tests as u64, written.tests);
            assert!(same_counts(&run.counts, &written.counts));
            assert_eq!(run.sha256, written.sha256, "{}", written.label);
            assert_eq!(run.unreadable_lines, 0);
            assert_eq!(run.file_bytes, written.bytes);
        }
    }

    #[test]
    fn long_failures_are_cut_at_the_plugin_cap() {
        let mut rng = Rng(1);
        let (_, text, total) = long_failure(&mut rng, "tests/a.py", 3, 100_000);
        assert_eq!(text.chars().count(), PLUGIN_LONGREPR_MAX);
        assert!(total >= 100_000);
        let (_, text, total) = long_failure(&mut rng, "tests/a.py", 3, 40_000);
        assert_eq!(text.chars().count(), total);
        assert!((40_000..PLUGIN_LONGREPR_MAX).contains(&total));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5_000), "5,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
