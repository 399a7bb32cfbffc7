//! `ci-bench`: starts real `ci-server` / `ci-controller` / `ci` binaries on a temp database and
//! the real Docker daemon, runs the benchmark scenarios, prints a table and writes
//! `docs/benchmarks.md` (a run with `--only` replaces its own section of it instead). Run it
//! through `scripts/bench.sh`; `--only report-parse` needs neither Docker nor the services.
//!
//! Exit status: 0 when every scenario completed with its correctness checks passing, 1 otherwise
//! (targets never change it), 2 for usage errors.

#[path = "ci-bench/big_log.rs"]
mod big_log;
#[path = "ci-bench/client.rs"]
mod client;
#[path = "ci-bench/dep_cache.rs"]
mod dep_cache;
#[path = "ci-bench/fixtures.rs"]
mod fixtures;
#[path = "ci-bench/installer.rs"]
mod installer;
#[path = "ci-bench/prune_latency.rs"]
mod prune_latency;
#[path = "ci-bench/report.rs"]
mod report;
#[path = "ci-bench/report_parse.rs"]
mod report_parse;
#[path = "ci-bench/scenarios.rs"]
mod scenarios;
#[path = "ci-bench/stack.rs"]
mod stack;
#[path = "ci-bench/stats.rs"]
mod stats;
#[path = "ci-bench/ui_paint.rs"]
mod ui_paint;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::report::{Machine, Outcome};
use crate::scenarios::{Ctx, Sizes, SCENARIOS};
use crate::stack::Database;

/// Benchmarks of ci: end to end, pickup and log latency, log throughput, fan-out, concurrency,
/// idle footprint, the dependency cache, the installer (uv, pip), the web UI's page of a big
/// log (in headless Chromium), log latency during a prune and a big log end to end, measured
/// with the real binaries and Docker; and test report parsing.
#[derive(Debug, Parser)]
#[command(name = "ci-bench")]
struct Args {
    /// Small sizes and one run per scenario (a smoke check, about a minute or two).
    #[arg(long)]
    quick: bool,

    /// Repetitions (default 5, or 1 with --quick). Scenarios 4-6, 12 and 13 run at most 3 times in
    /// full mode.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: Option<u32>,

    /// Where the markdown report goes.
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: PathBuf,

    /// Run only these scenarios (comma-separated numbers or names, e.g. 4,5 or report-parse),
    /// and replace only their own section of the report.
    #[arg(long, value_delimiter = ',', value_parser = scenarios::by_name)]
    only: Vec<usize>,

    /// The runner image (default: $CI_TEST_IMAGE, else ci-runner:bookworm).
    #[arg(long)]
    image: Option<String>,

    /// Run job containers in this OCI runtime: the controller's `--runtime`, and the floors'
    /// `docker run --runtime` (e.g. runsc for gVisor, registered by scripts/ensure-gvisor.sh).
    /// Only with --only: the scenarios get a section of their own for the runtime.
    #[arg(long, requires = "only", value_name = "NAME")]
    runtime: Option<String>,

    /// The controller's `--runtime-with-network` (e.g. runsc-net); default: --runtime.
    #[arg(long, requires = "runtime", value_name = "NAME")]
    runtime_with_network: Option<String>,

    /// The backend of the services' database: a fresh SQLite file, or a fresh database on a
    /// durable PostgreSQL cluster this process starts (Debian's server,
    /// scripts/ensure-postgres.sh). With postgres, only with --only: the scenarios get a
    /// section of their own beside SQLite's.
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    database: Database,

    /// Scenario 10 (installer) installs the wheels in this folder, every one pinned
    /// (scripts/fetch-bench-wheels.sh downloads the dozen real packages of
    /// tests/bench/installer-dozen.txt once and prints their folder; scripts/bench.sh passes it
    /// unless --quick). Default: a dozen generated packages, which need no download.
    #[arg(long, value_name = "DIR", env = "CI_BENCH_INSTALLER_WHEELS")]
    installer_wheels: Option<PathBuf>,

    /// Keep the services' logs even when everything passed.
    #[arg(long)]
    keep_logs: bool,

    /// Internal (scenario 8): parse this report once in this process, print what was measured.
    #[arg(long, hide = true, value_name = "FILE")]
    parse_report: Option<PathBuf>,

    /// Internal: `max_tests` for `--parse-report`.
    #[arg(long, hide = true, requires = "parse_report")]
    parse_max_tests: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.parse_report {
        return report_parse::child_main(path, args.parse_max_tests);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ci-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ci-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let image = args.image.clone().unwrap_or_else(ci_tests::test_image);
    if args.database == Database::Postgres && args.only.is_empty() {
        anyhow::bail!(
            "--database postgres writes a section of its own: give the scenarios with --only \
             (e.g. --only 1,2,3,4,5,6,7)"
        );
    }
    let selected = |number: usize| args.only.is_empty() || args.only.contains(&number);
    let docker = SCENARIOS.iter().any(|s| s.docker && selected(s.number));
    if docker {
        // Fails with a clear message when Docker or the image is missing.
        std::panic::catch_unwind(ci_tests::require_docker)
            .map_err(|_| anyhow::anyhow!("Docker or the runner image {image} is not available"))?;
    }
    let runs = args
        .runs
        .map(|r| r as usize)
        .unwrap_or(if args.quick { 1 } else { 5 });
    let sizes = Sizes::new(args.quick, runs);
    let work = tempfile::Builder::new()
        .prefix("ci-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let log_dir = work.path().join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let fixtures_dir = work.path().join("fixtures");
    std::fs::create_dir_all(&fixtures_dir)?;
    let ctx = Arc::new(Ctx {
        quick: args.quick,
        runs,
        image: image.clone(),
        work: fixtures_dir,
        log_dir: log_dir.clone(),
        http: client::http(),
        sizes,
        runtime: args.runtime.clone(),
        runtime_with_network: args.runtime_with_network.clone(),
        database: args.database,
        installer_wheels: args.installer_wheels.clone(),
    });
    let runtime = ctx.runtime_text();
    let mode = format!(
        "{} (runs {}; sizes: {:?}){}",
        if args.quick { "quick" } else { "full" },
        ctx.runs,
        ctx.sizes,
        runtime
            .as_ref()
            .map(|r| format!("; job containers in {r}"))
            .unwrap_or_default()
    );
    eprintln!("ci-bench: {mode}");
    let machine = Machine::describe(&image, &args.output);

    let scenario_limit = Duration::from_secs(if args.quick { 300 } else { 900 });
    let mut outcomes = Vec::new();
    for scenario in SCENARIOS.iter() {
        if !selected(scenario.number) {
            continue;
        }
        eprintln!("ci-bench: {}. {} ...", scenario.number, scenario.title);
        let started = Instant::now();
        let task = tokio::spawn(scenarios::run(scenario.number, Arc::clone(&ctx)));
        let abort = task.abort_handle();
        let findings = match tokio::time::timeout(scenario_limit, task).await {
            Ok(Ok(Ok(findings))) => Ok(findings),
            Ok(Ok(Err(e))) => Err(format!("{e:#}")),
            Ok(Err(join)) => Err(panic_text(join)),
            Err(_) => {
                abort.abort();
                Err(format!("took longer than {scenario_limit:?}"))
            }
        };
        let outcome = Outcome {
            number: scenario.number,
            findings,
            seconds: started.elapsed().as_secs_f64(),
        };
        match &outcome.findings {
            Ok(_) if outcome.passed() => {
                eprintln!(
                    "ci-bench: {}. done in {:.0} s",
                    scenario.number, outcome.seconds
                )
            }
            Ok(f) => {
                for c in f.checks.iter().filter(|c| !c.ok) {
                    eprintln!("ci-bench: {}. check failed: {}", scenario.number, c.what);
                }
            }
            Err(e) => eprintln!("ci-bench: {}. did not complete: {e}", scenario.number),
        }
        outcomes.push(outcome);
        // Let an aborted scenario's processes and containers go before the next one starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!("{}", report::results_table(&outcomes));
    println!("{}", report::correctness_table(&outcomes));
    let markdown = if args.only.is_empty() {
        report::markdown(&machine, &mode, &outcomes)
    } else {
        // Only this run's own section changes: the other scenarios' numbers stay.
        let existing = match std::fs::read_to_string(&args.output) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", args.output.display()))
            }
        };
        // Flags that make it a run of its own (a runtime, PostgreSQL) name its section.
        let mut flags = Vec::new();
        if let Some(r) = &args.runtime {
            flags.push(format!("--runtime {r}"));
        }
        if args.database == Database::Postgres {
            flags.push("--database postgres".to_owned());
        }
        let variant = (!flags.is_empty()).then(|| flags.join(" "));
        report::with_section(
            &existing,
            &machine,
            &mode,
            &outcomes,
            docker,
            variant.as_deref(),
        )
    };
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.output, markdown)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("ci-bench: wrote {}", args.output.display());

    let all_passed = !outcomes.is_empty() && outcomes.iter().all(Outcome::passed);
    if !all_passed || args.keep_logs {
        let kept = work.keep();
        eprintln!(
            "ci-bench: services' logs kept in {}",
            kept.join("logs").display()
        );
    }
    Ok(all_passed)
}

fn panic_text(join: tokio::task::JoinError) -> String {
    if join.is_panic() {
        let payload = join.into_panic();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown panic".to_owned());
        format!("panicked: {text}")
    } else {
        "cancelled".to_owned()
    }
}
