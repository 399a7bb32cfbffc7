//! What users read: log lines on stdout; progress, notices and the final state on stderr
//! (dimmed, coloured and animated only on a terminal, and never with `NO_COLOR`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ci_common::api::{JobView, StepView, StreamEvent};
use ci_common::results::{TestCounts, TestOutcome, TestResult, TestSummary};
use ci_common::webhooks::{CreatedWebhook, DeliveryView, WebhookView};
use ci_common::{JobId, JobStatus, StepState};

use crate::follow::{Finished, Sink};

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub enabled: bool,
}

impl Style {
    /// Colours for a stream: only on a terminal, and never when `NO_COLOR` is set.
    pub fn detect(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            enabled: is_terminal && !no_color,
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// A status word in its colour.
    pub fn status(self, status: JobStatus) -> String {
        match status {
            JobStatus::Passed => self.green(status.as_str()),
            JobStatus::Queued | JobStatus::Running => self.yellow(status.as_str()),
            _ => self.red(status.as_str()),
        }
    }
}

/// A one-line spinner on stderr; nothing at all unless stderr is a terminal.
pub struct Spinner {
    state: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Spinner {
    pub fn start(message: &str) -> Self {
        let state = Arc::new(Mutex::new(true));
        let running = state.clone();
        let message = message.to_owned();
        let task = tokio::spawn(async move {
            const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for frame in FRAMES.iter().cycle() {
                tick.tick().await;
                let guard = running.lock().unwrap_or_else(|e| e.into_inner());
                if !*guard {
                    return;
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{frame} {message}");
                let _ = err.flush();
            }
        });
        Spinner { state, task }
    }

    /// Stops the spinner and erases its line.
    pub fn stop(self) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *guard {
            *guard = false;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        drop(guard);
        self.task.abort();
    }
}

/// Prints a followed job for a person: the log on stdout, the rest on stderr.
pub struct Printer {
    pub out: Style,
    pub err: Style,
    animate: bool,
    spinner: Option<Spinner>,
    job_id: JobId,
    /// The job's test results, from its `summary` event.
    pub summary: Option<TestSummary>,
}

impl Printer {
    pub fn new(job_id: JobId) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        Printer {
            out: Style::detect(std::io::stdout().is_terminal()),
            err: Style::detect(stderr_tty),
            animate: stderr_tty,
            spinner: None,
            job_id,
            summary: None,
        }
    }

    /// Shows a spinner with `message` until the next line is printed (terminals only).
    pub fn spin(&mut self, message: &str) {
        self.stop_spinner();
        if self.animate {
            self.spinner = Some(Spinner::start(message));
        }
    }

    pub fn stop_spinner(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.stop();
        }
    }

    /// A line of progress or hint on stderr.
    pub fn info(&mut self, text: &str) {
        self.stop_spinner();
        say!("{}", self.err.dim(text));
    }

    /// The tests' summary and the failing tests (when they could be fetched), on stderr,
    /// before the final state.
    pub fn tests(&mut self, summary: &TestSummary, failures: Option<&[TestResult]>) {
        self.stop_spinner();
        let mut text = tests_summary(self.err, summary);
        if let Some(failures) = failures {
            text.push_str(&failures_block(
                self.err,
                self.job_id,
                failures,
                summary.counts.failures(),
            ));
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// The final state, on stderr.
    pub fn finished(&mut self, finished: &Finished) {
        self.stop_spinner();
        say!("{}", final_line(self.err, self.job_id, finished));
    }
}

/// Whoever read the output is gone (`ci wait ID | head`): stop as a command killed by SIGPIPE
/// would (exit 141). The job itself goes on on the server.
pub fn exit_on_closed_stdout() -> ! {
    std::process::exit(141)
}

impl Sink for Printer {
    fn event(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Log { data, .. } => {
                self.stop_spinner();
                let mut out = std::io::stdout().lock();
                if let Err(e) = writeln!(out, "{data}").and_then(|()| out.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        exit_on_closed_stdout();
                    }
                }
            }
            StreamEvent::Notice { data, .. } => self.info(&format!("[ci] {data}")),
            StreamEvent::Status { status, reason, .. } => {
                // The final state is printed once, from the `complete` event.
                if status.is_terminal() {
                    return;
                }
                let text = match reason {
                    Some(reason) => format!("[ci] status: {status} ({reason})"),
                    None => format!("[ci] status: {status}"),
                };
                self.info(&text);
                if *status == JobStatus::Queued {
                    self.spin("Waiting for a runner...");
                }
            }
            StreamEvent::Step { step, .. } => {
                // The start is announced by the step's notice; its end is worth a line when it
                // did not pass (a passing step is followed by the next one or the result).
                if step.state.is_terminal() && step.state != StepState::Passed {
                    self.info(&format!("[ci] {}", step_line(step)));
                }
            }
            // Printed with the failing tests, before the final state.
            StreamEvent::Summary { summary, .. } => self.summary = Some(summary.clone()),
            StreamEvent::Complete { .. } | StreamEvent::JobId { .. } => {}
        }
    }

    fn reconnecting(&mut self, error: &anyhow::Error, attempt: u32, delay: Duration) {
        // The root cause is enough here; the whole chain is printed if following gives up.
        self.info(&format!(
            "[ci] connection lost ({}); reconnecting in {:.1}s (attempt {attempt})",
            error.root_cause(),
            delay.as_secs_f64()
        ));
    }
}

/// `Job <id> passed` / `Job <id> failed (exit code 1)` / `Job <id> error: <reason>`.
pub fn final_line(style: Style, job_id: JobId, finished: &Finished) -> String {
    let mut line = format!(
        "Job {job_id} {}",
        style.bold(&style.status(finished.status))
    );
    if let Some(reason) = &finished.reason {
        let _ = write!(line, ": {reason}");
    }
    if let Some(code) = finished.exit_code {
        let _ = write!(line, " (exit code {code})");
    }
    if finished.status.success() {
        format!("{} {line}", style.green("✓"))
    } else {
        format!("{} {line}", style.red("✗"))
    }
}

/// Failing tests listed at the end of a run, at most.
pub const MAX_LISTED_FAILURES: usize = 20;
/// Lines of a failure's text shown at the end of a run.
pub const EXCERPT_LINES: usize = 6;
/// Characters of one line of an excerpt (an assertion's diff can be one huge line).
const EXCERPT_LINE_CHARS: usize = 200;
/// A test at least this slow is named at the end of a run.
const SLOW_MS: i64 = 1000;

/// The end of a run's test lines: `[ci] tests: 2 failed, 40 passed, 1 skipped in 3.21s`, the
/// slowest tests when any took a second or more, and what the report could not keep.
pub fn tests_summary(style: Style, summary: &TestSummary) -> String {
    let counts = &summary.counts;
    let line = format!("[ci] tests: {}", counts.summary_line());
    let mut text = if counts.failures() > 0 {
        style.red(&line)
    } else if counts.total() > 0 {
        style.green(&line)
    } else {
        line
    };
    text.push('\n');
    let slow: Vec<String> = summary
        .slowest
        .iter()
        .filter(|(_, ms)| *ms >= SLOW_MS)
        .map(|(nodeid, ms)| format!("{nodeid} {}", seconds(*ms)))
        .collect();
    if !slow.is_empty() {
        let _ = writeln!(
            text,
            "{}",
            style.dim(&format!("[ci] slowest: {}", slow.join(", ")))
        );
    }
    if summary.dropped_tests > 0 {
        let _ = writeln!(
            text,
            "{}",
            style.dim(&format!(
                "[ci] {} test results past the limit were counted but not kept",
                summary.dropped_tests
            ))
        );
    }
    if summary.unreadable_lines > 0 {
        let _ = writeln!(
            text,
            "{}",
            style.dim(&format!(
                "[ci] {} lines of the test report could not be read",
                summary.unreadable_lines
            ))
        );
    }
    text
}

fn seconds(ms: i64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// The failing tests at the end of a run: each one's header and the heart of its failure text,
/// then how to see the rest. `total` is how many tests failed or errored in all.
pub fn failures_block(style: Style, job_id: JobId, failures: &[TestResult], total: u64) -> String {
    let mut text = String::new();
    let mut cut = false;
    let (flaky, failures): (Vec<&TestResult>, Vec<&TestResult>) = failures
        .iter()
        .partition(|r| r.outcome == TestOutcome::Flaky);
    for result in failures.iter().take(MAX_LISTED_FAILURES) {
        let _ = writeln!(text, "{}", failure_header(style, result));
        let (lines, more) = excerpt(&result.longrepr, EXCERPT_LINES);
        cut |= more;
        for line in lines {
            let _ = writeln!(text, "    {}", failure_line(style, &line));
        }
    }
    let shown = failures.len().min(MAX_LISTED_FAILURES) as u64;
    if total > shown {
        let _ = writeln!(
            text,
            "{}",
            style.dim(&format!(
                "… and {} more: ci tests {job_id} --failed",
                total - shown
            ))
        );
    } else if cut {
        let _ = writeln!(
            text,
            "{}",
            style.dim(&format!(
                "[ci] whole failure texts: ci tests {job_id} --failed"
            ))
        );
    }
    if !flaky.is_empty() {
        let names: Vec<&str> = flaky.iter().map(|r| r.nodeid.as_str()).collect();
        let _ = writeln!(
            text,
            "{}",
            style.yellow(&format!(
                "[ci] flaky (failed, then passed when run again): {}",
                names.join(", ")
            ))
        );
    }
    text
}

/// `FAILED tests/test_x.py::test_y (tests/test_x.py:12): assert 1 == 2`.
pub fn failure_header(style: Style, result: &TestResult) -> String {
    let word = result.outcome.as_str().to_uppercase();
    let mut line = format!(
        "{} {}",
        style.bold(&style.red(&word)),
        printable(&result.nodeid)
    );
    if let Some(place) = location(result) {
        let _ = write!(line, " ({place})");
    }
    let message = result
        .message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if let Some(note) = note(result) {
        let _ = write!(line, " {}", style.dim(&format!("[{note}]")));
    }
    if !message.is_empty() {
        let _ = write!(
            line,
            ": {}",
            printable(&shorten(message, EXCERPT_LINE_CHARS))
        );
    }
    line
}

/// What a test's attempts and history add: `attempt 2; failed 3 of the last 20 runs` (its
/// history only when more than this run counts).
fn note(result: &TestResult) -> Option<String> {
    let mut parts = Vec::new();
    if result.attempt > 1 {
        parts.push(format!("attempt {}", result.attempt));
    }
    if let Some(history) = result.history.filter(|h| h.runs > 1) {
        parts.push(history.to_string());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `file:line`, `file`, or nothing.
fn location(result: &TestResult) -> Option<String> {
    let file = result.file.as_deref()?;
    Some(match result.line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    })
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A test's text as the end of a run prints it: control characters a test wrote (escape
/// sequences, bells, NUL) shown as `\x1b`, so they cannot move the cursor or recolour the
/// terminal; tabs are kept.
fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// One line of a failure's text, coloured as pytest does: `E` lines red, the failing line bold,
/// the rest dim.
fn failure_line(style: Style, line: &str) -> String {
    let line = &printable(line);
    if is_error_line(line) {
        style.red(line)
    } else if line.starts_with('>') {
        style.bold(line)
    } else {
        style.dim(line)
    }
}

fn is_error_line(line: &str) -> bool {
    line == "E" || line.starts_with("E ")
}

/// The heart of a failure's text in at most `max` lines, and whether anything was left out:
/// the last frame's failing line (`>`) and the error lines (`E`) after it, or the last lines
/// when the text has no `E` lines (`--tb=native`). Blank lines are dropped and long lines cut.
pub fn excerpt(longrepr: &str, max: usize) -> (Vec<String>, bool) {
    let lines: Vec<&str> = longrepr.lines().map(str::trim_end).collect();
    let written: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].is_empty()).collect();
    let start = match lines.iter().rposition(|l| is_error_line(l)) {
        Some(last_error) => {
            // The first `E` line of the last run of them, and the failing line of its frame.
            let first_error = lines[..=last_error]
                .iter()
                .rposition(|l| !is_error_line(l))
                .map_or(0, |i| i + 1);
            let frame_start = lines[..first_error]
                .iter()
                .rposition(|l| l.is_empty() || l.starts_with("_ _"))
                .map_or(0, |i| i + 1);
            match lines[frame_start..first_error]
                .iter()
                .rposition(|l| l.starts_with('>'))
            {
                Some(i) => frame_start + i,
                None => first_error.saturating_sub(1).max(frame_start),
            }
        }
        None => written
            .get(written.len().saturating_sub(max))
            .copied()
            .unwrap_or(0),
    };
    let from = written.partition_point(|&i| i < start);
    let shown: Vec<String> = written[from..]
        .iter()
        .take(max)
        .map(|&i| shorten(lines[i], EXCERPT_LINE_CHARS))
        .collect();
    let cut = shown.len() < written.len();
    (shown, cut)
}

/// `ci tests`: one line per test (outcome, name, duration, place), then the counts.
pub fn tests_table(results: &[TestResult], counts: Option<&TestCounts>, style: Style) -> String {
    let notes = results.iter().any(|r| note(r).is_some());
    let header = [
        "OUTCOME",
        "TEST",
        "DURATION",
        "LOCATION",
        if notes { "NOTE" } else { "" },
    ];
    let rows: Vec<[String; 5]> = results
        .iter()
        .map(|r| {
            [
                r.outcome.to_string(),
                printable(&r.nodeid),
                seconds(r.duration_ms),
                location(r).unwrap_or_else(|| "-".to_owned()),
                note(r).unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5], first: String| {
        let mut text = first;
        text.push_str(&" ".repeat(widths[0] - cells[0].chars().count() + 2));
        let _ = write!(
            text,
            "{:<w1$}  {:>w2$}  {:<w3$}  {}",
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        text.trim_end().to_owned() + "\n"
    };
    let mut table = line(header, style.bold(header[0]));
    for (result, row) in results.iter().zip(&rows) {
        let cells = row.each_ref().map(String::as_str);
        table.push_str(&line(cells, outcome_word(style, result.outcome)));
    }
    if let Some(counts) = counts {
        table.push_str(&counts.summary_line());
        table.push('\n');
    }
    table
}

fn outcome_word(style: Style, outcome: TestOutcome) -> String {
    match outcome {
        TestOutcome::Failed | TestOutcome::Error => style.red(outcome.as_str()),
        TestOutcome::Passed | TestOutcome::Xfailed => style.green(outcome.as_str()),
        _ => style.yellow(outcome.as_str()),
    }
}

/// `ci tests --failed`: each failing test's header and whole failure text, then the counts.
pub fn failures_details(
    results: &[TestResult],
    counts: Option<&TestCounts>,
    style: Style,
) -> String {
    let mut text = String::new();
    for result in results {
        let _ = writeln!(text, "{}", failure_header(style, result));
        for line in result.longrepr.trim_end().lines() {
            if line.trim().is_empty() {
                text.push('\n');
            } else {
                let _ = writeln!(text, "    {}", failure_line(style, line.trim_end()));
            }
        }
        let kept = result.longrepr.chars().count() as i64;
        if result.longrepr_chars > kept {
            let _ = writeln!(
                text,
                "    {}",
                style.dim(&format!(
                    "… (cut: the first {kept} of {} characters were kept)",
                    result.longrepr_chars
                ))
            );
        }
        text.push('\n');
    }
    if let Some(counts) = counts {
        if results.is_empty() {
            let _ = writeln!(text, "No failed tests ({}).", counts.summary_line());
        } else {
            let _ = writeln!(text, "{}", counts.summary_line());
        }
    }
    text
}

/// A time as the original client showed it: local time, `YYYY-MM-DD HH:MM:SS`, `-` if absent.
pub fn format_time<Tz: TimeZone>(time: Option<DateTime<Utc>>, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match time {
        Some(t) => t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "-".to_owned(),
    }
}

fn success_mark(status: JobStatus) -> &'static str {
    if !status.is_terminal() {
        "-"
    } else if status.success() {
        "✓"
    } else {
        "✗"
    }
}

/// The `ci list` table: the original's columns, then the tests' counts.
pub fn jobs_table<Tz: TimeZone>(jobs: &[JobView], tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if jobs.is_empty() {
        return "No jobs found.\n".to_owned();
    }
    // A TEAM column (the team, and who submitted the job) only when a job shown has one, so
    // that the table of someone in no team stays as it always was.
    let teams = jobs.iter().any(|job| job.team.is_some());
    let mut header = vec![
        "JOB ID",
        "STATUS",
        "START TIME",
        "END TIME",
        "SUCCESS",
        "TESTS",
    ];
    if teams {
        header.insert(1, "TEAM");
    }
    let team_cell = |job: &JobView| match (&job.team, &job.submitted_by) {
        (Some(team), Some(by)) => format!("{team} ({by})"),
        (Some(team), None) => team.clone(),
        (None, _) => "-".to_owned(),
    };
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let mut row = vec![
                job.job_id.to_string(),
                job.status.to_string(),
                format_time(job.start_time, tz),
                format_time(job.end_time, tz),
                success_mark(job.status).to_owned(),
                tests_cell(job.tests.as_ref(), Style::default()),
            ];
            if teams {
                row.insert(1, team_cell(job));
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let line = |cells: &[&str], styled: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, shown)) in cells.iter().zip(styled).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(&shown);
            } else {
                let pad = widths[i] - cell.chars().count() + 2;
                text.push_str(&shown);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    table.push_str(&line(
        &header,
        header.iter().map(|h| style.bold(h)).collect(),
    ));
    for (job, row) in jobs.iter().zip(&rows) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let mark = match success_mark(job.status) {
            "✓" => style.green("✓"),
            "✗" => style.red("✗"),
            other => other.to_owned(),
        };
        let mut styled = vec![
            row[0].clone(),
            style.status(job.status),
            format_time(job.start_time, tz),
            format_time(job.end_time, tz),
            mark,
            tests_cell(job.tests.as_ref(), style),
        ];
        if teams {
            styled.insert(1, row[1].clone());
        }
        table.push_str(&line(&cells, styled));
    }
    table
}

/// A job's tests in a few characters, for `ci list`: `40✓ 2✗` (passed, then failed or errored
/// when any; skipped and expected failures are not shown), `0` when none ran, `-` without
/// results.
pub fn tests_cell(counts: Option<&TestCounts>, style: Style) -> String {
    let Some(counts) = counts else {
        return "-".to_owned();
    };
    if counts.total() == 0 {
        return "0".to_owned();
    }
    let passed = counts.get(TestOutcome::Passed)
        + counts.get(TestOutcome::Flaky)
        + counts.get(TestOutcome::Xpassed);
    let mut cell = format!("{passed}{}", style.green("✓"));
    if counts.failures() > 0 {
        let _ = write!(cell, " {}{}", counts.failures(), style.red("✗"));
    }
    cell
}

/// `ci status` for a person.
pub fn job_details<Tz: TimeZone>(job: &JobView, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let dash = || "-".to_owned();
    let mut status = style.status(job.status);
    if job.cancel_requested && !job.status.is_terminal() {
        status.push_str(" (cancel requested)");
    }
    let mut log = job.log_lines.to_string();
    if job.dropped_lines > 0 {
        let _ = write!(log, " ({} dropped past the log cap)", job.dropped_lines);
    }
    let exit_code = match (job.exit_code, job.oom_killed) {
        (Some(code), true) => format!("{code} (out of memory)"),
        (Some(code), false) => code.to_string(),
        (None, true) => "- (out of memory)".to_owned(),
        (None, false) => dash(),
    };
    let mut rows = vec![
        ("Job ID", job.job_id.to_string()),
        ("Task", job.task.clone()),
        (
            "Arguments",
            if job.args.is_empty() {
                dash()
            } else {
                shlex::try_join(job.args.iter().map(String::as_str))
                    .unwrap_or_else(|_| job.args.join(" "))
            },
        ),
        ("Project", job.project.clone().unwrap_or_else(dash)),
        ("Status", status),
        ("Success", success_mark(job.status).to_owned()),
        ("Host", job.host.clone().unwrap_or_else(dash)),
        ("Reason", job.reason.clone().unwrap_or_else(dash)),
        ("Exit code", exit_code),
        ("Submitted", format_time(Some(job.created_at), tz)),
        ("Start time", format_time(job.start_time, tz)),
        ("End time", format_time(job.end_time, tz)),
        ("Log lines", log),
    ];
    if let Some(git) = &job.git {
        let commit = git.commit.as_deref().unwrap_or("not fetched yet");
        rows.insert(
            3,
            ("Git", format!("{} at {} ({commit})", git.url, git.git_ref)),
        );
    }
    if let Some(team) = &job.team {
        let by = job.submitted_by.as_deref().unwrap_or("-");
        rows.insert(3, ("Team", format!("{team} (submitted by {by})")));
    }
    let mut text: String = rows
        .iter()
        .map(|(name, value)| format!("{:<12}{value}\n", format!("{name}:")))
        .collect();
    if let Some(steps) = job.steps.as_ref().filter(|s| !s.is_empty()) {
        text.push_str("Steps:\n");
        for step in steps {
            let _ = writeln!(text, "  {}", step_line(step));
        }
    }
    text
}

/// One step as people read it: `2. test: failed (exit 1): some tests failed (pytest exit 1)`.
pub fn step_line(step: &StepView) -> String {
    let mut line = format!("{}. {}: {}", step.position, step.name, step.state);
    if let Some(code) = step.exit_code {
        let _ = write!(line, " (exit {code})");
    }
    if let (Some(start), Some(end)) = (step.started_at, step.finished_at) {
        let secs = (end - start).num_milliseconds() as f64 / 1000.0;
        let _ = write!(line, " in {secs:.1}s");
    }
    if let Some(reason) = &step.reason {
        let _ = write!(line, ": {reason}");
    }
    line
}

/// A plain table: a header and rows, columns two spaces apart, the last one not padded.
fn plain_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut table = line(header.to_vec());
    for row in rows {
        table.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    table
}

/// What `ci webhooks add` prints (on stdout): the new webhook and its secret.
pub fn created_webhook(created: &CreatedWebhook) -> String {
    let events: Vec<&str> = created.events.iter().map(|e| e.as_str()).collect();
    format!(
        "Webhook added: {}\nURL:     {}\nEvents:  {}\nSecret:  {}\n",
        created.id,
        created.url,
        events.join(", "),
        created.secret
    )
}

/// The `ci webhooks list` table.
pub fn webhooks_table<Tz: TimeZone>(webhooks: &[WebhookView], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if webhooks.is_empty() {
        return "No webhooks (add one with `ci webhooks add URL`).\n".to_owned();
    }
    let rows: Vec<Vec<String>> = webhooks
        .iter()
        .map(|w| {
            let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
            vec![
                w.id.to_string(),
                events.join(","),
                format_time(Some(w.created_at), tz),
                w.url.clone(),
            ]
        })
        .collect();
    plain_table(&["WEBHOOK ID", "EVENTS", "ADDED", "URL"], &rows)
}

/// The `ci webhooks deliveries` table: the last column is the last answer's status, or what
/// went wrong.
pub fn deliveries_table<Tz: TimeZone>(deliveries: &[DeliveryView], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if deliveries.is_empty() {
        return "No deliveries yet (one is made when a job of yours starts or ends).\n".to_owned();
    }
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            let last = match (&d.last_error, d.last_status) {
                (Some(error), _) => error.clone(),
                (None, Some(status)) => status.to_string(),
                (None, None) => "-".to_owned(),
            };
            vec![
                d.id.to_string(),
                d.event.to_string(),
                d.job_id.to_string(),
                d.state.to_string(),
                d.attempts.to_string(),
                format_time(Some(d.created_at), tz),
                format_time(d.last_attempt_at, tz),
                format_time(d.next_attempt_at, tz),
                last,
            ]
        })
        .collect();
    plain_table(
        &[
            "DELIVERY ID",
            "EVENT",
            "JOB ID",
            "STATE",
            "ATTEMPTS",
            "CREATED",
            "LAST ATTEMPT",
            "NEXT ATTEMPT",
            "LAST ANSWER",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use uuid::Uuid;

    #[test]
    fn webhook_tables() {
        use ci_common::webhooks::DeliveryState;
        let at = |secs: i64| DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap();
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        let hook = WebhookView {
            id: ci_common::WebhookId(Uuid::from_u128(7)),
            url: "https://hooks.example.com/ci".into(),
            events: ci_common::webhooks::WebhookEvent::ALL.to_vec(),
            created_at: at(0),
        };
        let delivery = |n: u128, state, attempts, status, error: Option<&str>| DeliveryView {
            id: ci_common::DeliveryId(Uuid::from_u128(n)),
            event: ci_common::webhooks::WebhookEvent::JobFinished,
            job_id: JobId(Uuid::from_u128(99)),
            state,
            attempts,
            last_status: status,
            last_error: error.map(str::to_owned),
            created_at: at(10),
            last_attempt_at: (attempts > 0).then(|| at(12)),
            next_attempt_at: (state == DeliveryState::Pending).then(|| at(40)),
            delivered_at: (state == DeliveryState::Delivered).then(|| at(12)),
        };
        let deliveries = [
            delivery(
                3,
                DeliveryState::Pending,
                2,
                None,
                Some("no answer within 10s"),
            ),
            delivery(2, DeliveryState::Delivered, 3, Some(200), None),
            delivery(
                1,
                DeliveryState::Failed,
                8,
                Some(500),
                Some("the receiver answered 500"),
            ),
        ];
        insta::assert_snapshot!(format!(
            "{}\n{}\n{}",
            webhooks_table(&[hook], &tz),
            deliveries_table(&deliveries, &tz),
            deliveries_table(&[], &tz)
        ));
    }

    fn job(n: u128, status: JobStatus, started: Option<i64>, ended: Option<i64>) -> JobView {
        let at = |secs: i64| DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap();
        JobView {
            job_id: JobId(Uuid::from_u128(n)),
            status,
            success: status.success(),
            task: "test".into(),
            args: Vec::new(),
            project: None,
            image: None,
            host: None,
            git: None,
            team: None,
            submitted_by: None,
            reason: None,
            exit_code: None,
            oom_killed: false,
            created_at: at(0),
            start_time: started.map(at),
            end_time: ended.map(at),
            cancel_requested: false,
            log_lines: 0,
            dropped_lines: 0,
            last_seq: None,
            steps: None,
            controller: None,
            tests: None,
        }
    }

    #[test]
    fn list_table() {
        let jobs = [
            job(4, JobStatus::Queued, None, None),
            job(3, JobStatus::Running, Some(5), None),
            job(2, JobStatus::Failed, Some(3), Some(64)),
            job(1, JobStatus::Passed, Some(1), Some(3_700)),
            job(0, JobStatus::Cancelled, None, Some(2)),
        ];
        let mut jobs = jobs;
        jobs[2].tests = Some(counts(&[
            (TestOutcome::Passed, 40),
            (TestOutcome::Failed, 2),
        ]));
        jobs[3].tests = Some(counts(&[
            (TestOutcome::Passed, 1250),
            (TestOutcome::Skipped, 3),
        ]));
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        insta::assert_snapshot!(jobs_table(&jobs, &tz, Style::default()));
    }

    #[test]
    fn empty_list() {
        assert_eq!(jobs_table(&[], &Utc, Style::default()), "No jobs found.\n");
    }

    #[test]
    fn colours_do_not_break_alignment() {
        let jobs = [job(1, JobStatus::Passed, Some(1), Some(2))];
        let plain = jobs_table(&jobs, &Utc, Style::default());
        let coloured = jobs_table(&jobs, &Utc, Style { enabled: true });
        let strip = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        assert_ne!(plain, coloured);
        assert_eq!(strip(&coloured), plain);
    }

    #[test]
    fn status_details() {
        let mut failed = job(7, JobStatus::Error, Some(1), Some(30));
        failed.reason = Some("pip install failed (exit code 1)".into());
        failed.host = Some("build-2".into());
        failed.exit_code = Some(1);
        failed.log_lines = 1200;
        failed.dropped_lines = 200;
        insta::assert_snapshot!(job_details(&failed, &Utc, Style::default()));
    }

    #[test]
    fn final_lines() {
        let id = JobId(Uuid::from_u128(9));
        let finished = |status, reason: Option<&str>, exit_code| Finished {
            status,
            reason: reason.map(str::to_owned),
            exit_code,
            tests: None,
        };
        let style = Style::default();
        assert_eq!(
            final_line(style, id, &finished(JobStatus::Passed, None, Some(0))),
            format!("✓ Job {id} passed (exit code 0)")
        );
        assert_eq!(
            final_line(style, id, &finished(JobStatus::Failed, None, Some(1))),
            format!("✗ Job {id} failed (exit code 1)")
        );
        assert_eq!(
            final_line(
                style,
                id,
                &finished(JobStatus::TimedOut, Some("ran longer than 600s"), None)
            ),
            format!("✗ Job {id} timed_out: ran longer than 600s")
        );
    }

    fn counts(outcomes: &[(TestOutcome, u64)]) -> TestCounts {
        TestCounts {
            outcomes: outcomes.iter().copied().collect(),
            duration_ms: 3_210.0,
        }
    }

    /// Failure texts as ci's pytest plugin reports them (pytest 7 in the runner image).
    const ASSERT_TEXT: &str = "def test_split_keeps_every_cent():\n>       assert sum(split_evenly(1000, 3)) == 1000\nE       assert 999 == 1000\nE        +  where 999 = sum([333, 333, 333])\nE        +    where [333, 333, 333] = split_evenly(1000, 3)\n\ntests/test_budget.py:20: AssertionError";
    const DIFF_TEXT: &str = "def test_dicts():\n>       assert helper(2) == {\"a\": 1, \"b\": 3}\nE       AssertionError: assert {'a': 1, 'b': 2} == {'a': 1, 'b': 3}\nE         Omitting 1 identical items, use -vv to show\nE         Differing items:\nE         {'b': 2} != {'b': 3}\nE         Use -v to get more diff\n\ntests/test_more.py:17: AssertionError";
    const FIXTURE_TEXT: &str = "@pytest.fixture\n    def broken():\n>       raise RuntimeError(\"the fixture broke\")\nE       RuntimeError: the fixture broke\n\ntests/test_more.py:5: RuntimeError";
    const MISSING_FIXTURE_TEXT: &str = "file /workspace/src/tests/test_more.py, line 10\n  def test_missing(nothere):\nE       fixture 'nothere' not found\n>       available fixtures: broken, cache, capfd, capsys, monkeypatch, tmp_path\n>       use 'pytest --fixtures [testpath]' for help on them.\n\n/workspace/src/tests/test_more.py:10";
    const NATIVE_TEXT: &str = "Traceback (most recent call last):\n  File \"/workspace/src/tests/test_a.py\", line 9, in test_a\n    check(1)\n  File \"/workspace/src/tests/test_a.py\", line 4, in check\n    helper(x)\n  File \"/workspace/src/tests/test_a.py\", line 2, in helper\n    raise ValueError(x)\nValueError: 1";

    fn result(
        nodeid: &str,
        outcome: TestOutcome,
        line: i64,
        message: &str,
        text: &str,
    ) -> TestResult {
        TestResult {
            nodeid: nodeid.into(),
            file: nodeid.split("::").next().map(str::to_owned),
            line: Some(line),
            outcome,
            duration_ms: 12,
            message: message.into(),
            longrepr: text.into(),
            longrepr_chars: text.chars().count() as i64,
            attempt: 1,
            history: None,
        }
    }

    fn failures() -> Vec<TestResult> {
        vec![
            result(
                "tests/test_budget.py::test_split_keeps_every_cent",
                TestOutcome::Failed,
                19,
                "assert 999 == 1000\n +  where 999 = sum([333, 333, 333])",
                ASSERT_TEXT,
            ),
            result(
                "tests/test_more.py::test_dicts",
                TestOutcome::Failed,
                16,
                "AssertionError: assert {'a': 1, 'b': 2} == {'a': 1, 'b': 3}\n  Omitting 1 identical items",
                DIFF_TEXT,
            ),
            result(
                "tests/test_more.py::test_uses_broken",
                TestOutcome::Error,
                7,
                "RuntimeError: the fixture broke",
                FIXTURE_TEXT,
            ),
        ]
    }

    #[test]
    fn end_of_run_tests() {
        let id = JobId(Uuid::from_u128(9));
        let summary = TestSummary {
            counts: counts(&[
                (TestOutcome::Failed, 2),
                (TestOutcome::Error, 1),
                (TestOutcome::Passed, 40),
                (TestOutcome::Skipped, 1),
            ]),
            slowest: vec![
                ("tests/test_slow.py::test_big_import".into(), 2_500),
                ("tests/test_slow.py::test_sleep".into(), 1_000),
                ("tests/test_budget.py::test_format".into(), 999),
            ],
            dropped_tests: 0,
            unreadable_lines: 0,
        };
        let style = Style::default();
        let block = tests_summary(style, &summary) + &failures_block(style, id, &failures(), 3);
        insta::assert_snapshot!(block);
    }

    #[test]
    fn end_of_run_tests_passed_and_too_many_failures() {
        let id = JobId(Uuid::from_u128(9));
        let passed = TestSummary {
            counts: counts(&[(TestOutcome::Passed, 7)]),
            slowest: vec![("tests/test_a.py::test_quick".into(), 30)],
            ..TestSummary::default()
        };
        assert_eq!(
            tests_summary(Style::default(), &passed),
            "[ci] tests: 7 passed in 3.21s\n",
            "no slowest line when every test is quick"
        );
        assert_eq!(failures_block(Style::default(), id, &[], 0), "");

        let many: Vec<TestResult> = (0..MAX_LISTED_FAILURES)
            .map(|i| {
                result(
                    &format!("tests/test_many.py::test_{i}"),
                    TestOutcome::Failed,
                    i as i64 + 1,
                    "assert 1 == 2",
                    "def test():\n>       assert 1 == 2\nE       assert 1 == 2",
                )
            })
            .collect();
        let block = failures_block(Style::default(), id, &many, 31);
        assert_eq!(block.matches("FAILED ").count(), MAX_LISTED_FAILURES);
        assert!(
            block.ends_with(&format!("… and 11 more: ci tests {id} --failed\n")),
            "{block}"
        );
        let dropped = TestSummary {
            dropped_tests: 5,
            unreadable_lines: 1,
            ..passed
        };
        let text = tests_summary(Style::default(), &dropped);
        assert!(text.contains("5 test results past the limit"), "{text}");
        assert!(text.contains("1 lines of the test report"), "{text}");
    }

    #[test]
    fn flaky_tests_and_history_are_named() {
        let id = JobId(Uuid::from_u128(9));
        let mut failing = result(
            "tests/test_net.py::test_retry",
            TestOutcome::Failed,
            4,
            "assert 1 == 2",
            ">       assert 1 == 2\nE       assert 1 == 2",
        );
        failing.attempt = 3;
        failing.history = Some(ci_common::results::TestHistory {
            failed: 3,
            runs: 20,
        });
        let mut flaky = result(
            "tests/test_net.py::test_flaky",
            TestOutcome::Flaky,
            9,
            "",
            "",
        );
        flaky.attempt = 2;
        let block = failures_block(Style::default(), id, &[failing.clone(), flaky.clone()], 1);
        assert!(
            block.starts_with(
                "FAILED tests/test_net.py::test_retry (tests/test_net.py:4) [attempt 3; failed 3 \
                 of the last 20 runs]: assert 1 == 2\n"
            ),
            "{block}"
        );
        assert!(
            block.ends_with(
                "[ci] flaky (failed, then passed when run again): tests/test_net.py::test_flaky\n"
            ),
            "{block}"
        );
        // A history of this run alone says nothing.
        failing.history = Some(ci_common::results::TestHistory { failed: 1, runs: 1 });
        failing.attempt = 1;
        assert!(!failure_header(Style::default(), &failing).contains('['));
        let table = tests_table(&[flaky], None, Style::default());
        assert!(
            table.lines().nth(1).unwrap().ends_with("attempt 2"),
            "{table}"
        );
    }

    #[test]
    fn control_characters_a_test_wrote_cannot_reach_the_terminal() {
        let bad = result(
            "t.py::test_\u{7}bell",
            TestOutcome::Failed,
            1,
            "\u{1b}[31mred\u{0} café 日本",
            ">       assert x\nE       \u{1b}[2Jgone\tTAB",
        );
        let block = failures_block(Style::default(), JobId(Uuid::from_u128(1)), &[bad], 1);
        assert!(
            !block
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{block:?}"
        );
        assert!(block.contains("t.py::test_\\x07bell"), "{block}");
        assert!(block.contains("\\x1b[31mred\\x00 café 日本"), "{block}");
        assert!(block.contains("E       \\x1b[2Jgone\tTAB"), "{block}");
    }

    #[test]
    fn excerpts_hold_the_failing_line_and_the_error() {
        let (lines, cut) = excerpt(ASSERT_TEXT, EXCERPT_LINES);
        assert_eq!(
            lines[0],
            ">       assert sum(split_evenly(1000, 3)) == 1000"
        );
        assert_eq!(lines[4], "tests/test_budget.py:20: AssertionError");
        assert!(cut, "the def line is left out");
        let (lines, _) = excerpt(DIFF_TEXT, EXCERPT_LINES);
        assert_eq!(lines.len(), EXCERPT_LINES);
        assert!(lines[0].starts_with(">       assert helper(2)"));
        // A missing fixture: the E line comes before pytest's `>` hints.
        let (lines, _) = excerpt(MISSING_FIXTURE_TEXT, EXCERPT_LINES);
        assert_eq!(
            lines[..2],
            [
                "  def test_missing(nothere):",
                "E       fixture 'nothere' not found"
            ]
        );
        // A traceback without E lines (--tb=native): its end.
        let (lines, cut) = excerpt(NATIVE_TEXT, 3);
        assert_eq!(
            lines,
            [
                "  File \"/workspace/src/tests/test_a.py\", line 2, in helper",
                "    raise ValueError(x)",
                "ValueError: 1"
            ]
        );
        assert!(cut);
        assert_eq!(excerpt("", EXCERPT_LINES), (vec![], false));
        let (lines, cut) = excerpt("E   boom", EXCERPT_LINES);
        assert_eq!((lines, cut), (vec!["E   boom".to_owned()], false));
        // One huge line is cut.
        let huge = format!(">   f()\nE   {}", "x".repeat(5000));
        let (lines, _) = excerpt(&huge, EXCERPT_LINES);
        assert_eq!(lines[1].chars().count(), EXCERPT_LINE_CHARS + 1);
    }

    #[test]
    fn tests_of_a_job() {
        let mut results = failures();
        results.insert(
            0,
            TestResult {
                duration_ms: 1_520,
                ..result(
                    "tests/test_budget.py::test_to_cents[12.5-1250]",
                    TestOutcome::Passed,
                    6,
                    "",
                    "",
                )
            },
        );
        results.push(TestResult {
            file: None,
            line: None,
            ..result(
                "tests/test_budget.py::test_later",
                TestOutcome::Skipped,
                0,
                "Skipped: later",
                "",
            )
        });
        let counts = counts(&[
            (TestOutcome::Failed, 2),
            (TestOutcome::Error, 1),
            (TestOutcome::Passed, 1),
            (TestOutcome::Skipped, 1),
        ]);
        insta::assert_snapshot!(tests_table(&results, Some(&counts), Style::default()));
    }

    #[test]
    fn failed_tests_of_a_job() {
        let mut results = failures();
        results[1].longrepr = results[1].longrepr.chars().take(60).collect();
        let counts = counts(&[
            (TestOutcome::Failed, 2),
            (TestOutcome::Error, 1),
            (TestOutcome::Passed, 40),
        ]);
        insta::assert_snapshot!(failures_details(&results, Some(&counts), Style::default()));
        let passed = self::counts(&[(TestOutcome::Passed, 40)]);
        assert_eq!(
            failures_details(&[], Some(&passed), Style::default()),
            "No failed tests (40 passed in 3.21s).\n"
        );
    }

    #[test]
    fn the_summary_event_is_kept_for_the_end_of_the_run() {
        let mut printer = Printer::new(JobId(Uuid::from_u128(1)));
        let summary = TestSummary {
            counts: counts(&[(TestOutcome::Passed, 3)]),
            ..TestSummary::default()
        };
        printer.event(&StreamEvent::Summary {
            seq: 7,
            summary: summary.clone(),
            ts: DateTime::UNIX_EPOCH,
        });
        assert_eq!(printer.summary, Some(summary));
    }

    #[test]
    fn tests_cells() {
        let style = Style::default();
        assert_eq!(tests_cell(None, style), "-");
        assert_eq!(tests_cell(Some(&counts(&[])), style), "0");
        assert_eq!(
            tests_cell(
                Some(&counts(&[
                    (TestOutcome::Passed, 40),
                    (TestOutcome::Error, 1),
                    (TestOutcome::Failed, 1),
                    (TestOutcome::Skipped, 3)
                ])),
                style
            ),
            "40✓ 2✗"
        );
    }
}
