//! The machine description and the markdown report.

use std::fmt::Write as _;
use std::process::Command;

use crate::scenarios::{Findings, SCENARIOS};

/// Where the numbers were taken.
pub struct Machine {
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub docker: String,
    pub image: String,
    pub commit: String,
    pub date: String,
}

impl Machine {
    /// The machine, `image` and the commit; `report` (the file being written) does not count
    /// as an uncommitted change.
    pub fn describe(image: &str, report: &std::path::Path) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let docker = output("docker", &["version", "--format", "{{.Server.Version}}"]);
        let image_id = output(
            "docker",
            &["image", "inspect", "--format", "{{.Id}}", image],
        );
        let commit = output("git", &["rev-parse", "--short", "HEAD"]);
        let exclude = format!(":(exclude){}", report.display());
        let dirty = !output(
            "git",
            &[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                &exclude,
            ],
        )
        .is_empty();
        Self {
            cpu: format!("{cores} cores ({model})"),
            memory: format!("{:.1} GiB", mem_kb / 1024.0 / 1024.0),
            kernel,
            docker,
            image: format!(
                "{image} ({})",
                image_id.chars().take(19).collect::<String>()
            ),
            commit: if dirty {
                format!("{commit} (with uncommitted changes)")
            } else {
                commit
            },
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A scenario's result for the report: its findings, or why it could not complete.
pub struct Outcome {
    pub number: usize,
    pub findings: Result<Findings, String>,
    pub seconds: f64,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(&self.findings, Ok(f) if !f.checks.is_empty() && f.checks.iter().all(|c| c.ok))
    }
}

fn title(number: usize) -> &'static str {
    SCENARIOS
        .iter()
        .find(|s| s.number == number)
        .map(|s| s.title)
        .unwrap_or("?")
}

/// The results table (also printed to stdout).
pub fn results_table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str("| # | Scenario | Figure | Median | p99 | Min – Max | n | Target | vs target |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---|---|\n");
    for o in outcomes {
        match &o.findings {
            Ok(f) => {
                for m in &f.metrics {
                    let (median, p99, range, n) = match m.summary() {
                        Some(s) => (
                            m.unit.format(s.median),
                            m.unit.format(s.p99),
                            format!("{} – {}", m.unit.format(s.min), m.unit.format(s.max)),
                            s.n.to_string(),
                        ),
                        None => ("—".into(), "—".into(), "—".into(), "0".into()),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {median} | {p99} | {range} | {n} | {} | {} |",
                        o.number,
                        title(o.number),
                        m.name,
                        m.target_text(),
                        m.status_text()
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | did not complete: {} | | | | | | |",
                    o.number,
                    title(o.number),
                    one_line(e)
                );
            }
        }
    }
    out
}

/// The correctness table: one row per scenario, `pass` or `FAIL`.
pub fn correctness_table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str("| # | Scenario | Result | Checks | Time |\n|---|---|---|---|---:|\n");
    for o in outcomes {
        let checks = match &o.findings {
            Ok(f) => f
                .checks
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("<br>"),
            Err(e) => format!("✗ did not complete: {}", one_line(e)),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} s |",
            o.number,
            title(o.number),
            if o.passed() { "pass" } else { "FAIL" },
            checks,
            o.seconds
        );
    }
    out
}

fn one_line(text: &str) -> String {
    text.replace('|', "\\|")
        .lines()
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The whole `docs/benchmarks.md`.
pub fn markdown(machine: &Machine, mode: &str, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "Written by `scripts/bench.sh` (the `ci-bench` binary in `tests/src/bin/`). Every figure \
         comes from real release binaries (`ci-server`, `ci-controller`, `ci`) on a fresh temporary \
         SQLite database and the real Docker daemon, on the machine below. Targets are reported, \
         not enforced: the smoke test (`tests/tests/bench_smoke.rs`) checks only that every \
         scenario completes with its correctness checks passing.\n\n",
    );
    out.push_str(&machine_table(machine, mode, true));
    out.push_str("\n## Results\n\n");
    out.push_str(SAMPLES);
    out.push_str(&results_table(outcomes));
    out.push_str("\n## Correctness\n\n");
    out.push_str(&correctness_table(outcomes));
    let notes = notes(outcomes);
    if !notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        out.push_str(&notes);
    }
    out.push_str(METHOD);
    out
}

const SAMPLES: &str = "Median, p99 and range are over every sample of the figure (latencies: every \
    line or job; rates, times and memory: one sample per run). \"vs target\" compares the median.\n\n";

fn machine_table(machine: &Machine, mode: &str, docker: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| Machine | |\n|---|---|");
    let _ = writeln!(out, "| Date | {} |", machine.date);
    let _ = writeln!(out, "| Commit | {} |", machine.commit);
    let _ = writeln!(out, "| Mode | {mode} |");
    let _ = writeln!(out, "| CPU | {} |", machine.cpu);
    let _ = writeln!(out, "| Memory | {} |", machine.memory);
    let _ = writeln!(out, "| Kernel | {} |", machine.kernel);
    if docker {
        let _ = writeln!(out, "| Docker server | {} |", machine.docker);
        let _ = writeln!(out, "| Runner image | {} |", machine.image);
    }
    out
}

/// The scenarios' notes as a markdown list (empty when there are none).
fn notes(outcomes: &[Outcome]) -> String {
    let notes: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.findings.as_ref().ok().map(|f| (o.number, f)))
        .flat_map(|(n, f)| {
            f.notes
                .iter()
                .map(move |note| format!("- {n}. {}", note.replace('\n', "\n  ")))
        })
        .collect();
    if notes.is_empty() {
        String::new()
    } else {
        notes.join("\n") + "\n"
    }
}

/// `existing` (the report a full run wrote) with the section of a `--only` run put in or
/// replaced: the section sits between two markers that name its scenarios (and `variant`, the
/// flags such as `--runtime runsc` that make it a run of its own), before "What each scenario
/// measures"; everything else is left as it was.
pub fn with_section(
    existing: &str,
    machine: &Machine,
    mode: &str,
    outcomes: &[Outcome],
    docker: bool,
    variant: Option<&str>,
) -> String {
    let names: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| SCENARIOS.iter().find(|s| s.number == o.number))
        .map(|s| s.name)
        .collect();
    let titles: Vec<&str> = outcomes.iter().map(|o| title(o.number)).collect();
    let command = match variant {
        Some(flags) => format!("--only {} {flags}", names.join(",")),
        None => format!("--only {}", names.join(",")),
    };
    let begin = format!("<!-- ci-bench {command}: begin -->\n");
    let end = format!("<!-- ci-bench {command}: end -->\n");

    let mut section = begin.clone();
    let _ = write!(
        section,
        "## {}{} (run on its own)\n\n\
         Written by `ci-bench {command}` (see *How to run*), which replaces only this section, \
         between its markers, and leaves the rest of this file as the last full run wrote it; a \
         full run rewrites the whole file, these scenarios included in its tables.\n\n",
        titles.join(", "),
        variant
            .map(|flags| format!(", {flags}"))
            .unwrap_or_default(),
    );
    section.push_str(&machine_table(machine, mode, docker));
    section.push_str("\n### Results\n\n");
    section.push_str(SAMPLES);
    section.push_str(&results_table(outcomes));
    section.push_str("\n### Checks\n\n");
    section.push_str(&correctness_table(outcomes));
    let notes = notes(outcomes);
    if !notes.is_empty() {
        section.push_str("\n### Notes\n\n");
        section.push_str(&notes);
    }
    section.push_str(&end);

    if let Some(start) = existing.find(&begin) {
        if let Some(stop) = existing[start..].find(&end) {
            let stop = start + stop + end.len();
            return format!("{}{section}{}", &existing[..start], &existing[stop..]);
        }
    }
    if existing.is_empty() {
        return format!("# Benchmarks\n\n{section}");
    }
    match existing.find(METHOD_HEADING) {
        Some(at) => format!("{}{section}\n{}", &existing[..at], &existing[at..]),
        None => format!("{}\n\n{section}", existing.trim_end()),
    }
}

const METHOD_HEADING: &str = "## What each scenario measures";

const METHOD: &str = r#"
## What each scenario measures

Scenarios 1-7 and 9-13 start their own `ci-server` (two replicas where noted) and `ci-controller`
on a new temporary database, with default flags except those named here, and the offline runner
image (`ci-runner:bookworm`, or `$CI_TEST_IMAGE`). Users and API keys are created directly in the
database. No `CI_*` variable of the caller reaches the services. Fixtures are generated at run
time; output that must stream while a test runs is written inside `capsys.disabled()`, because
the controller runs `python3 -m pytest` without `-s`.

1. **End to end** — wall time of the real `ci submit test` (`CI_SERVER_URL`, `CI_API_KEY`, cwd =
   a one-test passing project), from process start to exit. The floor, run alternately with it:
   `docker run --rm -v <copy of the same files>:/w -w /w --user 1000:1000 <image> python3 -m pytest
   -q -p no:cacheprovider`. The ratio is taken per interleaved pair. One unmeasured pair first warms
   Docker. With `--runtime` (e.g. gVisor's `runsc`) the controller runs job containers in that
   runtime and the floor is `docker run --runtime` of it.
2. **Pickup latency** — from the `201` of `POST /api/v1/jobs` (client clock) to the `start` event of
   the job's first container in `docker events --filter label=ci.prefix=<prefix>` (`timeNano`, same
   host clock). Jobs are submitted one after another, each waited for. Also shown: 201 → the job's
   `start_time` (claimed by the controller).
3. **Log latency** — a job prints `lat <i> <time.time_ns()>` every 10 ms, flushing each line; one
   SSE follower (`GET /api/v1/jobs/{id}/events`) connected right after the 201 takes the arrival
   time of the network chunk that carried each line. Latency = arrival − print, every line. The
   same jobs run again once the user has a webhook whose receiver (on 127.0.0.1) never answers:
   each delivery holds a sender slot for the controller's `--webhook-timeout` (10 s), beside the
   job, never on its log's path.
4. **Log throughput** — a job prints N lines of 51 bytes as fast as Python can, then its own count
   and SHA-256. The controller runs with the log cap off. Stored rate: `MAX(seq)` of the job polled
   every 10 ms in SQLite, from the first flood line being visible to the last one (also: by the
   first/last event `ts`). A follower on the *other* replica counts and hashes every line in
   order; after the job the database rows are counted and hashed too. Peak RSS is `VmHWM` of a
   stack started for the run. "Bounded" is read as under 100 MB.
5. **Fan-out** — K SSE followers, each on its own connection, on replica 2 (job submitted to
   replica 1); the job waits (so the followers can connect), then prints lines with their print
   time at a steady rate. Every follower must get every line in order, then `complete`. Server
   peak RSS is `VmHWM` of the followers' replica; latency is sampled on every 10th line of every
   follower. The followers run inside `ci-bench` on the same cores as the server (on 2 cores they
   take about as much CPU as the server does), so the latency is an upper bound.
6. **Concurrency** — the queue draining. The controller runs `--max-concurrent-jobs C`, C = the
   machine's cores (its default, passed explicitly). After one unmeasured job, each run first
   runs the trivial job of 1 alone K times (5; 1 with `--quick`), as a user of its own, then
   submits J of it from U users (round-robin; 100 from 10, 4 from 2 with `--quick`) all at once.
   A job's time runs from just before its `POST /api/v1/jobs` to its `end_time` (the
   controller's clock, on the same host); one job's time is the median of the K. All done = the
   first submission → the last `end_time`; ideal = J × one job's time ÷ C; target: all done /
   ideal ≤ 1.2×, per run. The queued jobs are polled once a second (their time does not depend
   on it; a hundred jobs polled every 20 ms would take the cores they run on). Also: errors, and
   the order in which the controller claimed the jobs, by user (their `start_time`); fairness
   figure = distinct users among the first U claims. The container start order (from `docker
   events`) is noted too: containers of jobs claimed moments apart are set up in parallel and may
   start in swapped order.
7. **Idle footprint** — `VmRSS` of the server and the controller 0.5 s after each said it was ready,
   with an empty database.
8. **Test report parsing** — no Docker, no services: `ci_common::results::read_report` with the
   default `ReportCaps`, reading through a `BufReader` over a file of the pytest plugin's format
   (`ci-controller/src/ci_results.py`), generated in a temp dir (deterministic): a typical
   5,000-test report (about 90% passed, 4% failed with multi-line tracebacks, errors in fixtures,
   skipped, xfailed, xpassed; one node id in eight non-ASCII), a ~50 MB one (94% passed, 3%
   failed with an assertion diff of 30,000 to 160,000 characters, most cut at the plugin's 65,536)
   and one twice as large (above the controller's default `--report-max-bytes` of 64 MiB; it is
   there to show how memory grows with the file). Each parse runs in a fresh
   `ci-bench --parse-report FILE` process: time from opening the file to `read_report`'s return;
   rate = file bytes / time (MB = 10^6 bytes); memory growth = the process's `VmHWM` at the end
   minus its `VmRSS` before opening, after resetting `VmHWM` (`/proc/self/clear_refs`); "kept" =
   the heap the returned `Report` holds (capacities of its vector and strings). The large report
   is also parsed with `max_tests` 1,000. Every parse must count every test per outcome as
   written and keep each one exactly as written (SHA-256 over all its fields).
9. **Dependency cache** — wall time of `ci submit test` (as in 1) for one project three ways, on
   one stack and one user: (a) without requirements (its two tiny packages are project folders),
   (c) warm: a `requirements.txt` installing the same packages from two local wheels
   (`--no-index --find-links wheels`) whose install an earlier job cached (a hit: no install
   step, the packages mounted read-only), and (b) cold: the same with a comment line that changes
   every run (a new key: a miss, the install runs). Each round runs a and c in alternating
   order, then b; one unmeasured run of a and one of the warm requirements (filling the entry)
   come first. The ratio warm / no requirements is taken per round (target ≤ 1.15×). Every job
   must pass, the warm ones' logs must say "dependency cache hit" and the cold ones' "miss". The
   notes give each phase's median, from the jobs' database timestamps and `docker events`.
10. **Installer** — a cold install of a dozen pinned packages from local wheels
   (`--no-index --find-links wheels`): the real ones of `tests/bench/installer-dozen.txt`
   (hypothesis, pygments, requests, attrs, typeguard, ... as PyPI ships them), which
   `scripts/bench.sh` fetches once with `scripts/fetch-bench-wheels.sh` and passes as
   `--installer-wheels`; with `--quick`, or without that flag, generated ones (realistic shapes,
   several modules and sub-packages each, dependencies between them, two console scripts, a
   data file) that need no download. Five ways per round, on one
   stack and one user: the install step of `ci submit test --no-cache` with `installer = "uv"`
   (1) and with `installer = "pip"` (2), from the step's `started_at` to its `finished_at` (its
   `step` events); and the installer command alone for the same file in `docker run --rm` of the
   runner image after `python3 -m venv --system-site-packages --without-pip /tmp/v`, timed inside
   the container with `date +%s%N`: `uv pip install --python /tmp/v/bin/python -r
   requirements.txt` (3) and `/tmp/v/bin/python -m pip install -r requirements.txt` (4); (3b) is
   (3) with /tmp on a tmpfs, as in job containers (uv without the container's root filesystem).
   Each round runs the five in turn, starting one further along than the round before; one
   unmeasured run of each comes first. Targets, per round: (1) / (3) ≤ 1.3×, (2) / (1) ≥ 4×.
   Every job must pass, its install log must say `ci-install: installing with uv` (or `pip`),
   and its test must find every package at its pinned version in /workspace/deps (the real
   ones: their top-level modules imported, their console scripts there; the generated ones:
   every module imported, both console scripts run). The notes split the install steps into phases (`docker events`, the log lines'
   Docker timestamps) and give uv's own report of its phases.
11. **Web UI, big log** — a job prints N lines as in 4 (1,000,000; 100,000 with `--quick`; the
   log cap off); once it has ended, Debian's headless Chromium (through chromedriver, window
   1280×1000) signs in on `/ui/signin` and opens the job's page from the jobs list, each visit a
   whole page load: navigation start → line 1 on screen with its text; pressing End → the last
   line on screen; and, after going back to the list, opening `/ui/jobs/<id>#L<last line>` →
   that line on screen. The times are the page's own `performance` marks (`ci:first-line`,
   `ci:last-line`), set when the log view first shows those lines with their text. The page
   must never hold more than 200 rows (it holds the lines on screen, not the log), and the `#L`
   link must highlight its line.
12. **Log latency during a prune** — the database is first filled with old jobs: 400 that ended
   40 days ago, each with 2,500 log lines of about 90 bytes (1,000,000 events in all), 100 test
   results and an 8 KiB report blob (20 jobs of 1,000 lines with `--quick`), written straight
   into the database through `ci_common::testing::history` (as ended jobs, so the controller
   never claims them). Then the job of 3 prints a line every 10 ms and one SSE follower takes
   each line's latency as in 3: its first 2,000 lines (20 s, about as long as the prune takes;
   50 with `--quick`) are the idle figure; then the real `ci-admin prune --older-than 30d --json` runs against the same database, and
   every line printed between its start and its exit is the "during" figure. The job keeps
   printing until 0.3 s after the prune ended, then is cancelled. Target: the p99 during the
   prune under twice the idle p99, per run (each run a fresh stack and database). The prune
   must remove exactly the old jobs with all their events, and the job must stream every line in
   order without seq gaps. On SQLite the run then writes as many jobs again and reports the
   database's pages (`PRAGMA page_count`, `freelist_count`): its size after the fill, its free
   pages after the prune, and how much it grew for the new jobs (the free pages are reused
   first).
13. **Big log end to end** — as 1, for a project whose test prints the lines of 4: 150,000 lines
   of 51 bytes (7.8 MB with their newlines; 5,000 with `--quick`), the controller with the log
   cap off. Wall time of the real `ci submit test`, from process start to exit, its stdout (every
   log line) read by `ci-bench` through a pipe as it comes. The floor, run alternately with it:
   the `docker run` of 1 over a copy of the same files, its stdout likewise read through a pipe.
   The ratio is taken per interleaved pair (target ≤ 2×); one unmeasured pair first warms Docker.
   Both must exit 0 and print every line in order (the count and SHA-256 of the lines read).

## How to run

```sh
scripts/bench.sh            # full run; writes docs/benchmarks.md
scripts/bench.sh --quick    # small sizes, one run: a smoke check (~1-2 min)
scripts/bench.sh --runs 3   # fewer repetitions
# scenario 8 alone: no Docker, no services; replaces only its own section of docs/benchmarks.md
cargo run --release -p ci-tests --bin ci-bench -- --only report-parse
# scenario 9 alone (needs Docker and the release binaries); replaces only its own section
cargo build --release --workspace --bins && target/release/ci-bench --only dep-cache
# scenario 10 alone, likewise
cargo build --release --workspace --bins && target/release/ci-bench --only installer
# scenario 11 alone (also needs scripts/ensure-browser.sh), likewise
cargo build --release --workspace --bins && target/release/ci-bench --only ui-paint
# scenario 12 alone (log latency during a prune of 1,000,000 events), likewise; also on PostgreSQL
cargo build --release --workspace --bins && target/release/ci-bench --only prune-latency
target/release/ci-bench --only prune-latency --database postgres
# scenario 13 alone (a 150,000-line log through `ci submit test`), likewise
cargo build --release --workspace --bins && target/release/ci-bench --only big-log
# scenario 1 with job containers under gVisor (scripts/ensure-gvisor.sh), in a section of its own
target/release/ci-bench --only end-to-end --runtime runsc --runtime-with-network runsc-net
```

`ci-bench --help` lists every flag (`--output PATH`, `--only 4,5` or `--only report-parse`,
`--runtime NAME`, `--keep-logs`). A run with `--only` writes its scenarios in a section of their
own (one per `--runtime`), replacing that section if the file has one, and leaves the rest of the
file as it was.
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::Findings;
    use crate::stats::{Goal, Metric, Unit};

    fn machine() -> Machine {
        Machine {
            cpu: "2 cores".into(),
            memory: "1 GiB".into(),
            kernel: "6".into(),
            docker: "27".into(),
            image: "img".into(),
            commit: "abc".into(),
            date: "today".into(),
        }
    }

    fn outcome(number: usize, value: f64) -> Outcome {
        let mut findings = Findings::default();
        findings.check(true, "counted");
        findings.metrics.push(Metric::new(
            "rate",
            Unit::MbPerSec,
            Goal::AtLeast(50.0),
            vec![value],
        ));
        Outcome {
            number,
            findings: Ok(findings),
            seconds: 1.0,
        }
    }

    #[test]
    fn an_only_run_replaces_its_own_section_and_nothing_else() {
        let full = markdown(&machine(), "full", &[outcome(7, 1.0)]);
        let once = with_section(&full, &machine(), "full", &[outcome(8, 111.0)], false, None);
        assert!(once.starts_with(full.split(METHOD_HEADING).next().unwrap()));
        assert!(once.ends_with(&full[full.find(METHOD_HEADING).unwrap()..]));
        assert!(once.contains("| 8 | Test report parsing | rate | 111.0 MB/s |"));
        assert!(!once.contains("Docker server | 27 |\n\n### Results"));

        let twice = with_section(&once, &machine(), "full", &[outcome(8, 222.0)], false, None);
        assert_eq!(twice.matches("--only report-parse: begin").count(), 1);
        assert!(twice.contains("| 222.0 MB/s |") && !twice.contains("| 111.0 MB/s |"));
        let outside = |text: &str| {
            let (before, rest) = text.split_once("<!-- ci-bench --only").unwrap();
            let after = rest.split_once("report-parse: end -->\n").unwrap().1;
            format!("{before}{after}")
        };
        assert_eq!(outside(&twice), outside(&once));

        let alone = with_section("", &machine(), "quick", &[outcome(8, 1.0)], false, None);
        assert!(alone.starts_with("# Benchmarks\n\n<!-- ci-bench --only report-parse: begin -->"));

        // A run with other flags (a runtime) has a section of its own beside the plain one.
        let variant = Some("--runtime runsc");
        let beside = with_section(
            &twice,
            &machine(),
            "full",
            &[outcome(8, 333.0)],
            false,
            variant,
        );
        assert!(beside.contains("| 222.0 MB/s |") && beside.contains("| 333.0 MB/s |"));
        assert!(beside.contains("## Test report parsing, --runtime runsc (run on its own)"));
        let again = with_section(
            &beside,
            &machine(),
            "full",
            &[outcome(8, 444.0)],
            false,
            variant,
        );
        assert!(again.contains("| 222.0 MB/s |") && again.contains("| 444.0 MB/s |"));
        assert!(!again.contains("| 333.0 MB/s |"));
        assert_eq!(
            again
                .matches("<!-- ci-bench --only report-parse --runtime runsc: begin -->")
                .count(),
            1
        );
    }
}
