//! What users read: log lines on stdout; progress, notices and the final state on stderr
//! (dimmed, coloured and animated only on a terminal, and never with `NO_COLOR`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ci_common::api::{JobView, StepView, StreamEvent};
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
            StreamEvent::Summary { .. }
            | StreamEvent::Complete { .. }
            | StreamEvent::JobId { .. } => {}
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

/// The `ci list` table (the original's columns).
pub fn jobs_table<Tz: TimeZone>(jobs: &[JobView], tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if jobs.is_empty() {
        return "No jobs found.\n".to_owned();
    }
    let header = ["JOB ID", "STATUS", "START TIME", "END TIME", "SUCCESS"];
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|job| {
            [
                job.job_id.to_string(),
                job.status.to_string(),
                format_time(job.start_time, tz),
                format_time(job.end_time, tz),
                success_mark(job.status).to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let line = |cells: [&str; 5], styled: [String; 5]| {
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
    table.push_str(&line(header, header.map(|h| style.bold(h))));
    for (job, row) in jobs.iter().zip(&rows) {
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        ];
        let mark = match row[4].as_str() {
            "✓" => style.green("✓"),
            "✗" => style.red("✗"),
            other => other.to_owned(),
        };
        let styled = [
            row[0].clone(),
            style.status(job.status),
            row[2].clone(),
            row[3].clone(),
            mark,
        ];
        table.push_str(&line(cells, styled));
    }
    table
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
    let rows = [
        ("Job ID", job.job_id.to_string()),
        ("Task", job.task.clone()),
        ("Status", status),
        ("Success", success_mark(job.status).to_owned()),
        ("Reason", job.reason.clone().unwrap_or_else(dash)),
        ("Exit code", exit_code),
        ("Submitted", format_time(Some(job.created_at), tz)),
        ("Start time", format_time(job.start_time, tz)),
        ("End time", format_time(job.end_time, tz)),
        ("Log lines", log),
    ];
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use uuid::Uuid;

    fn job(n: u128, status: JobStatus, started: Option<i64>, ended: Option<i64>) -> JobView {
        let at = |secs: i64| DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap();
        JobView {
            job_id: JobId(Uuid::from_u128(n)),
            status,
            success: status.success(),
            task: "test".into(),
            image: None,
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
}
