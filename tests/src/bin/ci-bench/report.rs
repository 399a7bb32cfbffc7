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
    pub fn describe(image: &str) -> Self {
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
        let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
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
    let _ = writeln!(out, "| Machine | |\n|---|---|");
    let _ = writeln!(out, "| Date | {} |", machine.date);
    let _ = writeln!(out, "| Commit | {} |", machine.commit);
    let _ = writeln!(out, "| Mode | {mode} |");
    let _ = writeln!(out, "| CPU | {} |", machine.cpu);
    let _ = writeln!(out, "| Memory | {} |", machine.memory);
    let _ = writeln!(out, "| Kernel | {} |", machine.kernel);
    let _ = writeln!(out, "| Docker server | {} |", machine.docker);
    let _ = writeln!(out, "| Runner image | {} |", machine.image);
    out.push_str("\n## Results\n\n");
    out.push_str(
        "Median, p99 and range are over every sample of the figure (latencies: every line or job; \
         rates, times and memory: one sample per run). \"vs target\" compares the median.\n\n",
    );
    out.push_str(&results_table(outcomes));
    out.push_str("\n## Correctness\n\n");
    out.push_str(&correctness_table(outcomes));
    let notes: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.findings.as_ref().ok().map(|f| (o.number, f)))
        .flat_map(|(n, f)| {
            f.notes
                .iter()
                .map(move |note| format!("- {n}. {}", note.replace('\n', "\n  ")))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out.push_str(METHOD);
    out
}

const METHOD: &str = r#"
## What each scenario measures

Every scenario starts its own `ci-server` (two replicas where noted) and `ci-controller` on a new
temporary database, with default flags except those named here, and the offline runner image
(`ci-runner:bookworm`, or `$CI_TEST_IMAGE`). Users and API keys are created directly in the
database. No `CI_*` variable of the caller reaches the services. Fixtures are generated at run
time; output that must stream while a test runs is written inside `capsys.disabled()`, because
the controller runs `python3 -m pytest` without `-s`.

1. **End to end** — wall time of the real `ci submit test` (`CI_SERVER_URL`, `CI_API_KEY`, cwd =
   a one-test passing project), from process start to exit. The floor, run alternately with it:
   `docker run --rm -v <copy of the same files>:/w -w /w --user 1000:1000 <image> python3 -m pytest
   -q -p no:cacheprovider`. The ratio is taken per interleaved pair. One unmeasured pair first warms
   Docker.
2. **Pickup latency** — from the `201` of `POST /api/v1/jobs` (client clock) to the `start` event of
   the job's first container in `docker events --filter label=ci.prefix=<prefix>` (`timeNano`, same
   host clock). Jobs are submitted one after another, each waited for. Also shown: 201 → the job's
   `start_time` (claimed by the controller).
3. **Log latency** — a job prints `lat <i> <time.time_ns()>` every 10 ms, flushing each line; one
   SSE follower (`GET /api/v1/jobs/{id}/events`) connected right after the 201 takes the arrival
   time of the network chunk that carried each line. Latency = arrival − print, every line.
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
6. **Concurrency** — J jobs from U users (round-robin), all submitted at once, each polled until it
   ends: time to all done, errors, and the order in which the controller claimed the jobs, by
   user (their `start_time`); fairness figure = distinct users among the first U claims. The
   container start order (from `docker events`) is noted too: containers of jobs claimed moments
   apart are set up in parallel and may start in swapped order. The controller runs its default
   number of concurrent jobs (the number of CPUs).
7. **Idle footprint** — `VmRSS` of the server and the controller 0.5 s after each said it was ready,
   with an empty database.

## How to run

```sh
scripts/bench.sh            # full run; writes docs/benchmarks.md
scripts/bench.sh --quick    # small sizes, one run: a smoke check (~1-2 min)
scripts/bench.sh --runs 3   # fewer repetitions
```

`ci-bench --help` lists every flag (`--output PATH`, `--only 4,5`, `--keep-logs`).
"#;
