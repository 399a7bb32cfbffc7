//! The scenarios. Each of 1-7, 9 (`dep_cache.rs`), 10 (`installer.rs`), 11 (`ui_paint.rs`),
//! 12 (`prune_latency.rs`) and 13 (`big_log.rs`) starts its own stack on a fresh database,
//! measures, checks that what it measured is correct (every line accounted for, no errors), and
//! returns figures + checks; 8 (`report_parse.rs`) needs no stack. Targets are reported, never
//! enforced.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ci_tests::ci_common::db::events;
use ci_tests::ci_common::EventKind;
use sha2::{Digest, Sha256};

use crate::client::{follow, submit, wait_done, wait_done_every};
use crate::fixtures;
use crate::stack::{memory_of, now_ns, DockerEvents, Stack, StackOptions};
use crate::stats::{Check, Goal, Metric, Summary, Unit};

/// Everything the scenarios share.
pub struct Ctx {
    pub quick: bool,
    pub runs: usize,
    pub image: String,
    /// Where fixtures are generated.
    pub work: PathBuf,
    /// Where the services' output goes.
    pub log_dir: PathBuf,
    pub http: reqwest::Client,
    pub sizes: Sizes,
    /// The OCI runtime of job containers (`--runtime`), and of steps with network.
    pub runtime: Option<String>,
    pub runtime_with_network: Option<String>,
    /// The backend of the services' database (`--database`).
    pub database: crate::stack::Database,
    /// Scenario 10's wheels (`--installer-wheels`); `None`: generated ones.
    pub installer_wheels: Option<PathBuf>,
}

/// How big each scenario is.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub e2e_runs: usize,
    pub pickup_jobs: usize,
    pub latency_runs: usize,
    pub latency_lines: usize,
    pub latency_interval_ms: u64,
    pub flood_runs: usize,
    pub flood_lines: usize,
    pub fan_runs: usize,
    pub fan_followers: usize,
    pub fan_lines: usize,
    pub fan_rate: usize,
    pub fan_delay_ms: u64,
    /// Runs of the concurrency scenario: each times the trivial job alone `conc_solo_runs`
    /// times, then drains a queue of `conc_jobs` of it from `conc_users` users.
    pub conc_runs: usize,
    pub conc_solo_runs: usize,
    pub conc_jobs: usize,
    pub conc_users: usize,
    pub idle_runs: usize,
    pub parse_runs: usize,
    /// Tests in the typical report.
    pub parse_tests: usize,
    /// Size of the large report (MB); a second one is twice that.
    pub parse_big_mb: u64,
    /// Rounds of the dependency cache scenario (no requirements, warm, cold).
    pub dep_runs: usize,
    /// Rounds of the installer scenario (install step with uv and pip, uv and pip alone).
    pub installer_runs: usize,
    /// Page loads of the web UI scenario, and the lines of its job's log.
    pub ui_runs: usize,
    pub ui_lines: usize,
    /// Runs of the prune scenario, each on a database filled with `prune_jobs` old jobs of
    /// `prune_events_per_job` log lines; the running job's first `prune_idle_lines` lines are
    /// the idle measurement.
    pub prune_runs: usize,
    pub prune_jobs: usize,
    pub prune_events_per_job: usize,
    pub prune_idle_lines: usize,
    /// Interleaved pairs (ours, floor) of the big log scenario, and the lines its job prints.
    pub big_log_runs: usize,
    pub big_log_lines: usize,
}

impl Sizes {
    pub fn new(quick: bool, runs: usize) -> Self {
        let runs = runs.max(1);
        let heavy = runs.min(3);
        if quick {
            Sizes {
                e2e_runs: 2 * runs,
                pickup_jobs: 3 * runs,
                latency_runs: runs,
                latency_lines: 50,
                latency_interval_ms: 10,
                flood_runs: runs,
                flood_lines: 20_000,
                fan_runs: runs,
                fan_followers: 50,
                fan_lines: 1_000,
                fan_rate: 2_000,
                fan_delay_ms: 1_000,
                conc_runs: runs,
                conc_solo_runs: 1,
                conc_jobs: 4,
                conc_users: 2,
                idle_runs: runs,
                parse_runs: runs,
                parse_tests: 5_000,
                parse_big_mb: 4,
                dep_runs: 2 * runs,
                installer_runs: 2 * runs,
                ui_runs: runs,
                ui_lines: 100_000,
                prune_runs: runs,
                prune_jobs: 20,
                prune_events_per_job: 1_000,
                prune_idle_lines: 50,
                big_log_runs: runs,
                big_log_lines: 5_000,
            }
        } else {
            Sizes {
                e2e_runs: 2 * runs,
                pickup_jobs: 6 * runs,
                latency_runs: runs,
                latency_lines: 300,
                latency_interval_ms: 10,
                flood_runs: heavy,
                flood_lines: 1_000_000,
                fan_runs: heavy,
                fan_followers: 1_000,
                fan_lines: 10_000,
                fan_rate: 2_000,
                fan_delay_ms: 3_000,
                conc_runs: heavy,
                conc_solo_runs: 5,
                conc_jobs: 100,
                conc_users: 10,
                idle_runs: runs,
                parse_runs: runs,
                parse_tests: 5_000,
                parse_big_mb: 50,
                dep_runs: 2 * runs,
                installer_runs: 2 * runs,
                ui_runs: runs,
                ui_lines: 1_000_000,
                prune_runs: heavy,
                prune_jobs: 400,
                prune_events_per_job: 2_500,
                prune_idle_lines: 2_000,
                big_log_runs: heavy,
                big_log_lines: 150_000,
            }
        }
    }
}

/// What a scenario found.
#[derive(Default)]
pub struct Findings {
    pub metrics: Vec<Metric>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Findings {
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok,
        });
    }
}

/// A scenario's number, title, the name `--only` also takes, and whether it needs Docker.
pub struct Scenario {
    pub number: usize,
    pub title: &'static str,
    pub name: &'static str,
    pub docker: bool,
}

pub const SCENARIOS: [Scenario; 13] = [
    Scenario {
        number: 1,
        title: "End to end",
        name: "end-to-end",
        docker: true,
    },
    Scenario {
        number: 2,
        title: "Pickup latency",
        name: "pickup",
        docker: true,
    },
    Scenario {
        number: 3,
        title: "Log latency",
        name: "log-latency",
        docker: true,
    },
    Scenario {
        number: 4,
        title: "Log throughput",
        name: "log-throughput",
        docker: true,
    },
    Scenario {
        number: 5,
        title: "Fan-out",
        name: "fan-out",
        docker: true,
    },
    Scenario {
        number: 6,
        title: "Concurrency",
        name: "concurrency",
        docker: true,
    },
    Scenario {
        number: 7,
        title: "Idle footprint",
        name: "idle",
        docker: true,
    },
    Scenario {
        number: 8,
        title: "Test report parsing",
        name: "report-parse",
        docker: false,
    },
    Scenario {
        number: 9,
        title: "Dependency cache",
        name: "dep-cache",
        docker: true,
    },
    Scenario {
        number: 10,
        title: "Installer",
        name: "installer",
        docker: true,
    },
    Scenario {
        number: 11,
        title: "Web UI, big log",
        name: "ui-paint",
        docker: true,
    },
    Scenario {
        number: 12,
        title: "Log latency during a prune",
        name: "prune-latency",
        docker: true,
    },
    Scenario {
        number: 13,
        title: "Big log end to end",
        name: "big-log",
        docker: true,
    },
];

/// The scenario a `--only` value names, by number or name.
pub fn by_name(value: &str) -> Result<usize, String> {
    SCENARIOS
        .iter()
        .find(|s| s.name == value || s.number.to_string() == value)
        .map(|s| s.number)
        .ok_or_else(|| {
            let names: Vec<String> = SCENARIOS
                .iter()
                .map(|s| format!("{} ({})", s.number, s.name))
                .collect();
            format!("no scenario {value:?}: use one of {}", names.join(", "))
        })
}

pub async fn run(number: usize, ctx: Arc<Ctx>) -> Result<Findings> {
    match number {
        1 => end_to_end(&ctx).await,
        2 => pickup(&ctx).await,
        3 => log_latency(&ctx).await,
        4 => throughput(&ctx).await,
        5 => fan_out(&ctx).await,
        6 => concurrency(&ctx).await,
        7 => idle(&ctx).await,
        8 => crate::report_parse::run(ctx).await,
        9 => crate::dep_cache::run(&ctx).await,
        10 => crate::installer::run(&ctx).await,
        11 => crate::ui_paint::run(&ctx).await,
        12 => crate::prune_latency::run(&ctx).await,
        13 => crate::big_log::run(&ctx).await,
        _ => bail!("no scenario {number}"),
    }
}

impl Ctx {
    pub(crate) fn stack_options(&self, replicas: usize, controller_args: &[&str]) -> StackOptions {
        let runtime = [
            ("--runtime", &self.runtime),
            ("--runtime-with-network", &self.runtime_with_network),
        ];
        let runtime_args = runtime
            .into_iter()
            .filter_map(|(flag, name)| Some([flag.to_owned(), name.clone()?]))
            .flatten();
        StackOptions {
            replicas,
            database: self.database,
            controller_args: controller_args
                .iter()
                .map(|s| (*s).to_owned())
                .chain(runtime_args)
                .collect(),
            image: self.image.clone(),
            log_dir: self.log_dir.clone(),
        }
    }

    /// The arguments of a floor's `docker run` that choose the runtime (none: Docker's default).
    pub(crate) fn docker_run_runtime(&self) -> Vec<String> {
        match &self.runtime {
            Some(name) => vec!["--runtime".to_owned(), name.clone()],
            None => Vec::new(),
        }
    }

    /// The runtime of job containers for the report (`None`: Docker's default).
    pub(crate) fn runtime_text(&self) -> Option<String> {
        let name = self.runtime.as_ref()?;
        Some(match &self.runtime_with_network {
            Some(net) if net != name => format!("runtime {name} ({net} with network)"),
            _ => format!("runtime {name}"),
        })
    }

    /// How long one job may take before the scenario gives up on it.
    pub(crate) fn job_timeout(&self) -> Duration {
        Duration::from_secs(if self.quick { 120 } else { 600 })
    }
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

fn status_of(view: &serde_json::Value) -> String {
    view["status"].as_str().unwrap_or("?").to_owned()
}

/// Runs `cmd` to completion with a time limit; returns (wall time, success, output tail).
pub(crate) async fn timed(
    mut cmd: tokio::process::Command,
    timeout: Duration,
) -> Result<(Duration, bool, String)> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("{cmd:?} took longer than {timeout:?}"))?
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let elapsed = start.elapsed();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Ok((elapsed, output.status.success(), tail))
}

// ---------------------------------------------------------------------------------------------
// 1. End to end

/// The real `ci submit test` in `dir` against the server at `url` as the user with `key`, with
/// none of the caller's `CI_*` settings and no config file.
pub(crate) fn ci_submit_test(
    url: &str,
    key: &str,
    dir: &std::path::Path,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(ci_tests::bin("ci"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CI_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(["submit", "test"])
        .current_dir(dir)
        .env("CI_SERVER_URL", url)
        .env("CI_API_KEY", key)
        .env("CI_CONFIG", dir.join("no-such-config"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("NO_COLOR", "1");
    cmd
}

/// The floor of a job: a bare `docker run` of the runner image (in `--runtime`, if given) that
/// runs pytest in `dir` as the jobs' user, labelled with the stack's `prefix` so that its
/// container goes with the stack's.
pub(crate) fn floor_pytest(
    ctx: &Ctx,
    prefix: &str,
    dir: &std::path::Path,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(["run", "--rm"])
        .args(ctx.docker_run_runtime())
        .arg("--label")
        .arg(format!("ci.prefix={prefix}"))
        .arg("-v")
        .arg(format!("{}:/w", dir.display()))
        .args(["-w", "/w", "--user", "1000:1000", &ctx.image])
        .args(["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    cmd
}

async fn end_to_end(ctx: &Ctx) -> Result<Findings> {
    let load_start = crate::dep_cache::load_average();
    let stack = Stack::start(ctx.stack_options(1, &[])).await?;
    let user = stack.db.user("Bench").await;
    let ours_dir = fixtures::trivial(&ctx.work, "e2e-ours")?;
    let floor_dir = fixtures::trivial(&ctx.work, "e2e-floor")?;
    let url = stack.server(0).url.clone();
    let timeout = ctx.job_timeout();

    let ci = |dir: &std::path::Path| ci_submit_test(&url, &user.key, dir);
    let floor = |dir: &std::path::Path| floor_pytest(ctx, stack.prefix(), dir);

    // One unmeasured pair warms Docker and the page cache.
    let (_, ok, tail) = timed(ci(&ours_dir.dir), timeout).await?;
    if !ok {
        bail!("warm-up `ci submit test` failed:\n{tail}");
    }
    let (_, ok, tail) = timed(floor(&floor_dir.dir), timeout).await?;
    if !ok {
        bail!("warm-up floor `docker run` failed:\n{tail}");
    }

    let mut f = Findings::default();
    let (mut ours, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_ok, mut floor_ok) = (0, 0);
    for _ in 0..ctx.sizes.e2e_runs {
        let (t_ours, ok, tail) = timed(ci(&ours_dir.dir), timeout).await?;
        if ok {
            ours_ok += 1;
        } else {
            f.notes.push(format!("`ci submit test` failed:\n{tail}"));
        }
        let (t_floor, ok, tail) = timed(floor(&floor_dir.dir), timeout).await?;
        if ok {
            floor_ok += 1;
        } else {
            f.notes.push(format!("floor `docker run` failed:\n{tail}"));
        }
        let (a, b) = (t_ours.as_secs_f64(), t_floor.as_secs_f64());
        ours.push(a * 1000.0);
        floors.push(b * 1000.0);
        ratios.push(a / b);
    }
    let n = ctx.sizes.e2e_runs;
    f.check(
        ours_ok == n,
        format!("{ours_ok}/{n} `ci submit test` exited 0"),
    );
    f.check(floor_ok == n, format!("{floor_ok}/{n} floor runs exited 0"));
    f.metrics.push(Metric::new(
        "`ci submit test` wall time",
        Unit::Ms,
        Goal::None,
        ours,
    ));
    f.metrics.push(Metric::new(
        "floor: bare `docker run … pytest` wall time",
        Unit::Ms,
        Goal::None,
        floors,
    ));
    f.metrics.push(Metric::new(
        "ours / floor (per interleaved pair)",
        Unit::Ratio,
        Goal::AtMost(1.3),
        ratios,
    ));
    f.notes.push(crate::dep_cache::load_note(
        load_start,
        "; compare the per-pair ratios",
    ));
    if let Some(runtime) = ctx.runtime_text() {
        f.notes.push(format!(
            "Job containers and the floor's `docker run` in {runtime}."
        ));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// 2. Pickup latency

async fn pickup(ctx: &Ctx) -> Result<Findings> {
    let mut stack = Stack::start(ctx.stack_options(1, &[])).await?;
    let user = stack.db.user("Bench").await;
    let zip = fixtures::trivial(&ctx.work, "pickup")?.zip();
    let events = DockerEvents::start(stack.prefix(), now_ns().saturating_sub(1_000_000_000))?;
    let base = stack.server(0).url.clone();
    let mut f = Findings::default();
    let mut accepted = Vec::new();
    let mut claimed = Vec::new();
    let mut passed = 0;
    for _ in 0..ctx.sizes.pickup_jobs {
        let job = submit(&ctx.http, &base, &user.key, zip.clone()).await?;
        let view = wait_done(&ctx.http, &base, &user.key, &job.job_id, ctx.job_timeout()).await?;
        if status_of(&view) == "passed" {
            passed += 1;
        } else {
            f.notes.push(format!(
                "job {} ended {}: {}",
                job.job_id,
                status_of(&view),
                view["reason"]
            ));
        }
        if let Some(start) = view["start_time"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        {
            let start_ns = start.timestamp_nanos_opt().unwrap_or(0) as i128;
            claimed.push(ms(start_ns - job.accepted_ns as i128));
        }
        accepted.push(job);
        stack.ensure_alive()?;
    }
    let ids: Vec<String> = accepted.iter().map(|j| j.job_id.clone()).collect();
    let starts = events.wait_for_starts(&ids, Duration::from_secs(10)).await;
    let latencies: Vec<f64> = accepted
        .iter()
        .filter_map(|j| {
            starts
                .get(&j.job_id)
                .map(|t| ms(*t as i128 - j.accepted_ns as i128))
        })
        .collect();
    let creates = events.first("create");
    let created: Vec<f64> = accepted
        .iter()
        .filter_map(|j| {
            let c = creates.get(&j.job_id)?;
            Some(ms(*c as i128 - j.accepted_ns as i128))
        })
        .collect();
    let create_to_start: Vec<f64> = accepted
        .iter()
        .filter_map(|j| {
            let (c, s) = (creates.get(&j.job_id)?, starts.get(&j.job_id)?);
            Some(ms(*s as i128 - *c as i128))
        })
        .collect();
    let n = ctx.sizes.pickup_jobs;
    f.check(passed == n, format!("{passed}/{n} jobs passed"));
    f.check(
        latencies.len() == n,
        format!(
            "{}/{n} jobs had a container start in `docker events`",
            latencies.len()
        ),
    );
    f.metrics.push(Metric::new(
        "201 accepted → container started (docker events)",
        Unit::Ms,
        Goal::AtMost(150.0),
        latencies,
    ));
    f.metrics.push(Metric::new(
        "201 accepted → job claimed (`start_time`)",
        Unit::Ms,
        Goal::None,
        claimed,
    ));
    f.metrics.push(Metric::new(
        "201 accepted → container created (docker events)",
        Unit::Ms,
        Goal::None,
        created,
    ));
    f.metrics.push(Metric::new(
        "container created → started (archive upload + start)",
        Unit::Ms,
        Goal::None,
        create_to_start,
    ));
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// 3. Log latency

/// Log latency twice on one stack: as it is, then with a webhook of the user's whose receiver
/// never answers (each delivery holds a sender slot for `--webhook-timeout`), to show that
/// sending webhooks stays off the log's path.
async fn log_latency(ctx: &Ctx) -> Result<Findings> {
    use ci_tests::webhook_receiver::{Answer, Receiver};
    let mut stack =
        Stack::start(ctx.stack_options(1, &["--webhook-allow", "http://127.0.0.1"])).await?;
    let user = stack.db.user("Bench").await;
    let lines = ctx.sizes.latency_lines;
    let zip = fixtures::latency(&ctx.work, lines, ctx.sizes.latency_interval_ms)?.zip();
    let mut f = Findings::default();
    let plain = latency_runs(ctx, &mut stack, &user.key, &zip, &mut f, "").await?;
    f.metrics.push(Metric::new(
        format!(
            "print → SSE arrival (a line every {} ms)",
            ctx.sizes.latency_interval_ms
        ),
        Unit::Ms,
        Goal::AtMost(100.0),
        plain,
    ));

    let receiver = Receiver::start(|_| Answer::Hang).await;
    let base = stack.server(0).url.clone();
    let response = ctx
        .http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&user.key)
        .json(&serde_json::json!({ "url": receiver.url }))
        .send()
        .await
        .context("POST /api/v1/webhooks")?;
    if response.status().as_u16() != 201 {
        bail!(
            "adding the webhook answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let hanging = latency_runs(
        ctx,
        &mut stack,
        &user.key,
        &zip,
        &mut f,
        " (hanging webhook)",
    )
    .await?;
    let runs = ctx.sizes.latency_runs;
    let reached = receiver.received().len();
    f.check(
        reached >= runs,
        format!("the hanging receiver was sent deliveries while the jobs ran ({reached} requests)"),
    );
    f.metrics.push(Metric::new(
        format!(
            "print → SSE arrival, with a webhook whose receiver never answers (a line every {} ms)",
            ctx.sizes.latency_interval_ms
        ),
        Unit::Ms,
        Goal::AtMost(100.0),
        hanging,
    ));
    Ok(f)
}

/// Runs the latency job `latency_runs` times as the user with `key`, following each; returns
/// every line's latency (ms) and records a check (named with `label`) that every job passed
/// with all its lines in order.
async fn latency_runs(
    ctx: &Ctx,
    stack: &mut Stack,
    key: &str,
    zip: &[u8],
    f: &mut Findings,
    label: &str,
) -> Result<Vec<f64>> {
    let lines = ctx.sizes.latency_lines;
    let base = stack.server(0).url.clone();
    let mut latencies = Vec::new();
    let mut complete_runs = 0;
    for _ in 0..ctx.sizes.latency_runs {
        let job = submit(&ctx.http, &base, key, zip.to_vec()).await?;
        let mut seen = 0usize;
        let mut in_order = true;
        let followed = follow(
            &ctx.http,
            &base,
            key,
            &job.job_id,
            ctx.job_timeout(),
            |text, arrived| {
                let mut parts = text.split(' ');
                if parts.next() != Some("lat") {
                    return;
                }
                let i: Option<usize> = parts.next().and_then(|v| v.parse().ok());
                let printed: Option<i128> = parts.next().and_then(|v| v.parse().ok());
                if let (Some(i), Some(printed)) = (i, printed) {
                    in_order &= i == seen;
                    seen += 1;
                    latencies.push(ms(arrived as i128 - printed));
                }
            },
        )
        .await?;
        let ok = seen == lines
            && in_order
            && followed.id_gaps == 0
            && followed.complete_status.as_deref() == Some("passed");
        if ok {
            complete_runs += 1;
        } else {
            f.notes.push(format!(
                "job {}{label}: {seen}/{lines} lines, in order: {in_order}, id gaps: {}, complete: {:?}",
                job.job_id, followed.id_gaps, followed.complete_status
            ));
        }
        stack.ensure_alive()?;
    }
    let runs = ctx.sizes.latency_runs;
    f.check(
        complete_runs == runs,
        format!("{complete_runs}/{runs} jobs{label} passed with all {lines} lines streamed in order, no seq gaps"),
    );
    Ok(latencies)
}

// ---------------------------------------------------------------------------------------------
// 4. Log throughput

/// Samples `MAX(seq)` of a job every few milliseconds until stopped.
fn poll_progress(
    pool: ci_tests::ci_common::db::Db,
    job_id: String,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> tokio::task::JoinHandle<Vec<(u64, i64)>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let Ok(job_id) = job_id.parse() else {
            return samples;
        };
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(seq) = events::last_seq(&pool, job_id).await {
                samples.push((now_ns(), seq));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples
    })
}

/// What the database holds of the flood: count and checksum of `flood ` lines in seq order,
/// their first and last seq, and the first and last event timestamps.
struct Stored {
    count: usize,
    sha: String,
    first_seq: i64,
    last_seq: i64,
    first_ts: Option<chrono::DateTime<chrono::Utc>>,
    last_ts: Option<chrono::DateTime<chrono::Utc>>,
}

async fn stored_flood(pool: &ci_tests::ci_common::db::Db, job_id: &str) -> Result<Stored> {
    let job_id = job_id.parse().context("the job id is not a UUID")?;
    let mut hash = Sha256::new();
    let mut out = Stored {
        count: 0,
        sha: String::new(),
        first_seq: 0,
        last_seq: 0,
        first_ts: None,
        last_ts: None,
    };
    let mut after = 0;
    loop {
        let page = events::list_after(pool, job_id, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in page
            .iter()
            .filter(|r| r.kind == EventKind::Log && r.text.starts_with("flood "))
        {
            hash.update(row.text.as_bytes());
            hash.update(b"\n");
            if out.count == 0 {
                out.first_seq = row.seq;
                out.first_ts = Some(row.ts);
            }
            out.last_seq = row.seq;
            out.last_ts = Some(row.ts);
            out.count += 1;
        }
    }
    out.sha = fixtures::hex(&hash.finalize());
    Ok(out)
}

/// Lines per second that the database layer alone stores: the controller's batch write
/// (`events::append_with_progress` of 1000 lines: one fenced transaction) on a fresh database, without
/// Docker or log parsing in the way.
async fn append_ceiling(database: crate::stack::Database, lines: usize) -> Result<f64> {
    use ci_tests::ci_common::db::jobs;
    use ci_tests::ci_common::LogStream;
    let db = database.fresh().await;
    let user = db.user("Ceiling").await;
    let job = jobs::create(&db.pool, user.id, "test", b"zip").await?;
    let epoch = ci_tests::ci_common::db::lease::acquire(&db.pool, "ceiling")
        .await?
        .epoch;
    let started = Instant::now();
    let mut i = 0;
    while i < lines {
        let end = (i + 1000).min(lines);
        let batch: Vec<events::NewEvent> = (i..end)
            .map(|k| {
                events::NewEvent::log(
                    LogStream::Stdout,
                    chrono::Utc::now(),
                    fixtures::flood_line(k),
                )
            })
            .collect();
        let progress = jobs::LogProgress::default();
        events::append_with_progress(&db.pool, job.id, epoch, &batch, &progress).await?;
        i = end;
    }
    Ok(lines as f64 / started.elapsed().as_secs_f64())
}

async fn throughput(ctx: &Ctx) -> Result<Findings> {
    let lines = ctx.sizes.flood_lines;
    let zip = fixtures::flood(&ctx.work, lines)?.zip();
    let expected_sha = fixtures::flood_checksum(lines);
    let mut f = Findings::default();
    let mut stored_rate = Vec::new();
    let mut ts_rate = Vec::new();
    let mut print_rate = Vec::new();
    let mut follower_done = Vec::new();
    let mut follower_rate = Vec::new();
    let mut lost = Vec::new();
    let mut server_peak = Vec::new();
    let mut controller_peak = Vec::new();
    let mut ceiling = Vec::new();
    for run in 0..ctx.sizes.flood_runs {
        // A fresh stack per run, so that peak memory is this run's.
        let mut stack =
            Stack::start(ctx.stack_options(2, &["--log-cap-lines", "0", "--log-cap-bytes", "4g"]))
                .await?;
        let user = stack.db.user("Bench").await;
        let submit_to = stack.server(0).url.clone();
        let follow_from = stack.server(1).url.clone();
        let job = submit(&ctx.http, &submit_to, &user.key, zip.clone()).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_progress(
            stack.db.pool.clone(),
            job.job_id.clone(),
            Arc::clone(&stop),
            ctx.job_timeout(),
        );

        let mut hash = Sha256::new();
        let mut count = 0usize;
        let mut last_arrival = 0u64;
        let mut end_line: Option<String> = None;
        let followed = follow(
            &ctx.http,
            &follow_from,
            &user.key,
            &job.job_id,
            ctx.job_timeout(),
            |text, arrived| {
                if text.starts_with("flood ") {
                    hash.update(text.as_bytes());
                    hash.update(b"\n");
                    count += 1;
                    last_arrival = arrived;
                } else if text.starts_with("flood-end ") {
                    end_line = Some(text.to_owned());
                }
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let samples = poller.await.unwrap_or_default();
        let followed = followed?;
        let follower_sha = fixtures::hex(&hash.finalize());
        let view = wait_done(
            &ctx.http,
            &submit_to,
            &user.key,
            &job.job_id,
            ctx.job_timeout(),
        )
        .await?;
        stack.ensure_alive()?;
        let servers_peak = stack
            .servers
            .iter()
            .map(|s| memory_of(s.proc.pid()).map(|m| m.peak))
            .collect::<Result<Vec<_>>>()?;
        server_peak.push(servers_peak.iter().copied().fold(0.0, f64::max));
        controller_peak.push(stack.controller.proc.memory_mb()?.peak);

        let stored = stored_flood(&stack.db.pool, &job.job_id).await?;
        // The fixture's own account: flood-end <start_ns> <end_ns> <count> <sha256>
        let end: Vec<String> = end_line
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .map(str::to_owned)
            .collect();
        let printed_start: Option<u64> = end.get(1).and_then(|v| v.parse().ok());
        let printed_end: Option<u64> = end.get(2).and_then(|v| v.parse().ok());
        let printed_count: Option<usize> = end.get(3).and_then(|v| v.parse().ok());
        let printed_sha = end.get(4).cloned().unwrap_or_default();

        let tag = format!("run {}", run + 1);
        f.check(
            status_of(&view) == "passed",
            format!("{tag}: job passed ({})", status_of(&view)),
        );
        f.check(
            printed_count == Some(lines) && printed_sha == expected_sha,
            format!("{tag}: the fixture printed {lines} lines with the expected checksum"),
        );
        f.check(
            stored.count == lines && stored.sha == expected_sha,
            format!(
                "{tag}: database holds {}/{lines} lines, checksum {}",
                stored.count,
                if stored.sha == expected_sha {
                    "matches"
                } else {
                    "DIFFERS"
                }
            ),
        );
        f.check(
            count == lines && follower_sha == expected_sha && followed.id_gaps == 0,
            format!(
                "{tag}: follower (other replica) got {count}/{lines} lines in order, checksum {}, {} seq gaps",
                if follower_sha == expected_sha { "matches" } else { "DIFFERS" },
                followed.id_gaps
            ),
        );
        f.check(
            view["dropped_lines"].as_i64() == Some(0),
            format!(
                "{tag}: no line dropped by the log cap ({})",
                view["dropped_lines"]
            ),
        );
        lost.push(lines.saturating_sub(count.min(stored.count)) as f64);

        // Stored rate, as observed by polling MAX(seq): from the first flood line's seq being
        // visible to the last one's.
        let seen_at = |seq: i64| samples.iter().find(|(_, s)| *s >= seq).map(|(t, _)| *t);
        if let (Some(t0), Some(t1)) = (seen_at(stored.first_seq), seen_at(stored.last_seq)) {
            if t1 > t0 && stored.count > 1 {
                stored_rate.push((stored.count - 1) as f64 / ((t1 - t0) as f64 / 1e9));
            }
        }
        if let (Some(a), Some(b)) = (stored.first_ts, stored.last_ts) {
            let secs = (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6;
            if secs > 0.0 {
                ts_rate.push((stored.count - 1) as f64 / secs);
            }
        }
        if let (Some(a), Some(b)) = (printed_start, printed_end) {
            if b > a {
                print_rate.push(lines as f64 / ((b - a) as f64 / 1e9));
            }
            if last_arrival > a {
                let secs = (last_arrival - a) as f64 / 1e9;
                follower_done.push(secs);
                follower_rate.push(count as f64 / secs);
            }
        }
        drop(stack);
        ceiling.push(append_ceiling(ctx.database, lines).await?);
    }
    f.metrics.push(Metric::new(
        "stored in the database (MAX(seq) polled every 10 ms)",
        Unit::LinesPerSec,
        Goal::AtLeast(250_000.0),
        stored_rate,
    ));
    f.metrics.push(Metric::new(
        "ceiling: `events::append` alone (1000-line transactions, no Docker)",
        Unit::LinesPerSec,
        Goal::None,
        ceiling,
    ));
    f.metrics.push(Metric::new(
        "stored, by first/last event `ts`",
        Unit::LinesPerSec,
        Goal::None,
        ts_rate,
    ));
    f.metrics.push(Metric::new(
        "fixture print rate (the source)",
        Unit::LinesPerSec,
        Goal::None,
        print_rate,
    ));
    f.metrics.push(Metric::new(
        "first print → follower has the last line",
        Unit::Secs,
        Goal::None,
        follower_done,
    ));
    f.metrics.push(Metric::new(
        "follower delivery rate",
        Unit::LinesPerSec,
        Goal::None,
        follower_rate,
    ));
    f.metrics.push(Metric::new(
        "lines lost",
        Unit::Count,
        Goal::AtMost(0.0),
        lost,
    ));
    f.metrics.push(
        Metric::new(
            "ci-server peak RSS (VmHWM, max of 2 replicas)",
            Unit::Mb,
            Goal::AtMost(100.0),
            server_peak,
        )
        .note("bounded"),
    );
    f.metrics.push(
        Metric::new(
            "ci-controller peak RSS (VmHWM)",
            Unit::Mb,
            Goal::AtMost(100.0),
            controller_peak,
        )
        .note("bounded"),
    );
    f.notes.push(format!("{lines} lines of 51 bytes per run; log cap off (--log-cap-lines 0 --log-cap-bytes 4g); submitted to replica 1, followed from replica 2"));
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// 5. Fan-out

/// What one fan-out follower saw.
struct FanResult {
    lines: usize,
    in_order: bool,
    passed: bool,
    gaps: u64,
    /// Latency of every 10th line, ms.
    sampled: Vec<f64>,
    last_arrival: u64,
    error: Option<String>,
}

async fn fan_out(ctx: &Ctx) -> Result<Findings> {
    let s = &ctx.sizes;
    let zip = fixtures::fanout(&ctx.work, s.fan_lines, s.fan_rate, 20, s.fan_delay_ms)?.zip();
    let mut f = Findings::default();
    let mut peak = Vec::new();
    let mut latencies = Vec::new();
    let mut all_done = Vec::new();
    let mut connect_ms = Vec::new();
    for run in 0..s.fan_runs {
        let mut stack = Stack::start(ctx.stack_options(2, &[])).await?;
        let user = stack.db.user("Bench").await;
        let submit_to = stack.server(0).url.clone();
        let follow_from = stack.server(1).url.clone();
        let job = submit(&ctx.http, &submit_to, &user.key, zip.clone()).await?;
        // One client: every in-flight HTTP/1.1 stream gets its own connection, like separate users.
        let started = now_ns();
        let mut tasks = Vec::new();
        for _ in 0..s.fan_followers {
            let http = ctx.http.clone();
            let (url, key, id) = (follow_from.clone(), user.key.clone(), job.job_id.clone());
            let timeout = ctx.job_timeout();
            tasks.push(tokio::spawn(async move {
                let mut r = FanResult {
                    lines: 0,
                    in_order: true,
                    passed: false,
                    gaps: 0,
                    sampled: Vec::new(),
                    last_arrival: 0,
                    error: None,
                };
                let outcome = follow(&http, &url, &key, &id, timeout, |text, arrived| {
                    let mut parts = text.split(' ');
                    if parts.next() != Some("fan") {
                        return;
                    }
                    let i: Option<usize> = parts.next().and_then(|v| v.parse().ok());
                    let printed: Option<u64> = parts.next().and_then(|v| v.parse().ok());
                    if let (Some(i), Some(printed)) = (i, printed) {
                        r.in_order &= i == r.lines;
                        r.lines += 1;
                        r.last_arrival = arrived;
                        if i % 10 == 0 {
                            r.sampled.push((arrived as f64 - printed as f64) / 1e6);
                        }
                    }
                })
                .await;
                match outcome {
                    Ok(followed) => {
                        r.passed = followed.complete_status.as_deref() == Some("passed");
                        r.gaps = followed.id_gaps;
                        (r, Some(followed.connected_ns))
                    }
                    Err(e) => {
                        r.error = Some(format!("{e:#}"));
                        (r, None)
                    }
                }
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.context("follower task")?);
        }
        stack.ensure_alive()?;
        peak.push(stack.server(1).proc.memory_mb()?.peak);
        let complete = results
            .iter()
            .filter(|(r, _)| r.lines == s.fan_lines && r.in_order && r.passed && r.gaps == 0)
            .count();
        let tag = format!("run {}", run + 1);
        f.check(
            complete == s.fan_followers,
            format!("{tag}: {complete}/{} followers got all {} lines in order, no seq gaps, then `complete` (passed)", s.fan_followers, s.fan_lines),
        );
        if let Some((r, _)) = results
            .iter()
            .find(|(r, _)| r.error.is_some() || r.lines != s.fan_lines)
        {
            f.notes.push(format!(
                "{tag}: a follower got {} lines: {}",
                r.lines,
                r.error.as_deref().unwrap_or("stream ended early")
            ));
        }
        if let Some(last) = results.iter().map(|(r, _)| r.last_arrival).max() {
            all_done.push((last.saturating_sub(started)) as f64 / 1e9);
        }
        if let Some(latest_connect) = results.iter().filter_map(|(_, c)| *c).max() {
            connect_ms.push(ms(latest_connect as i128 - started as i128));
        }
        for (r, _) in results {
            latencies.extend(r.sampled);
        }
    }
    f.metrics.push(Metric::new(
        "ci-server peak RSS (the followers' replica)",
        Unit::Mb,
        Goal::AtMost(100.0),
        peak,
    ));
    f.metrics.push(Metric::new(
        "delivery latency, print → arrival (every 10th line)",
        Unit::Ms,
        Goal::None,
        latencies,
    ));
    f.metrics.push(Metric::new(
        "all followers connected (after 201)",
        Unit::Ms,
        Goal::None,
        connect_ms,
    ));
    f.metrics.push(Metric::new(
        "201 → every follower has every line",
        Unit::Secs,
        Goal::None,
        all_done,
    ));
    f.notes.push(format!(
        "{} followers on replica 2 (job submitted to replica 1); the job waits {} ms, then prints {} lines at {} lines/s in batches of 20",
        s.fan_followers, s.fan_delay_ms, s.fan_lines, s.fan_rate
    ));
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// 6. Concurrency

/// When a job ended: its `end_time` (the controller's clock, on this host), ns since the epoch.
fn end_ns(view: &serde_json::Value) -> Option<u64> {
    let end = chrono::DateTime::parse_from_rfc3339(view["end_time"].as_str()?).ok()?;
    u64::try_from(end.timestamp_nanos_opt()?).ok()
}

/// Submits the job alone and waits for it: (from just before the submission to its `end_time`,
/// in seconds; its status; its id).
async fn job_alone(
    ctx: &Ctx,
    base: &str,
    key: &str,
    zip: &[u8],
) -> Result<(Option<f64>, String, String)> {
    let started = now_ns();
    let job = submit(&ctx.http, base, key, zip.to_vec()).await?;
    let view = wait_done(&ctx.http, base, key, &job.job_id, ctx.job_timeout()).await?;
    let secs = end_ns(&view).map(|end| end.saturating_sub(started) as f64 / 1e9);
    Ok((secs, status_of(&view), job.job_id))
}

/// The queue draining: each run first times the trivial job alone (`conc_solo_runs` times),
/// then submits `conc_jobs` of it from `conc_users` users at once, and compares the time until
/// the last one ended with the ideal: jobs × one job's time ÷ the controller's concurrency. A
/// job's time runs from just before its submission to its `end_time`, so that how often the
/// benchmark polls does not count.
async fn concurrency(ctx: &Ctx) -> Result<Findings> {
    let s = &ctx.sizes;
    // The controller's default (the number of CPUs), passed explicitly so that the ideal knows it.
    let concurrent = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let concurrent_arg = concurrent.to_string();
    let mut stack =
        Stack::start(ctx.stack_options(1, &["--max-concurrent-jobs", concurrent_arg.as_str()]))
            .await?;
    let mut users = Vec::new();
    for i in 0..s.conc_users {
        users.push(stack.db.user(&format!("User{}", i + 1)).await);
    }
    // The jobs alone run as a user of their own, so that the queue's users start even (a claim
    // prefers the user whose last job started longest ago).
    let alone = stack.db.user("Alone").await;
    let zip = fixtures::trivial(&ctx.work, "concurrency")?.zip();
    let base = stack.server(0).url.clone();
    let events = DockerEvents::start(stack.prefix(), now_ns().saturating_sub(1_000_000_000))?;

    // One unmeasured job warms Docker and the page cache.
    let (_, status, id) = job_alone(ctx, &base, &alone.key, &zip).await?;
    if status != "passed" {
        bail!("warm-up job {id} ended {status}");
    }

    let mut f = Findings::default();
    let mut total = Vec::new();
    let mut alone_secs = Vec::new();
    let mut ideal = Vec::new();
    let mut ratio = Vec::new();
    let mut errors = Vec::new();
    let mut first_round = Vec::new();
    for run in 0..s.conc_runs {
        let tag = format!("run {}", run + 1);
        let mut solo = Vec::new();
        let mut solo_passed = 0;
        for _ in 0..s.conc_solo_runs {
            let (secs, status, id) = job_alone(ctx, &base, &alone.key, &zip).await?;
            if status == "passed" {
                solo_passed += 1;
            } else {
                f.notes
                    .push(format!("{tag}: job {id} (alone) ended {status}"));
            }
            solo.extend(secs);
        }
        let one = Summary::of(&solo).map(|m| m.median);
        alone_secs.extend(solo);
        stack.ensure_alive()?;

        let started = now_ns();
        let submits = (0..s.conc_jobs).map(|k| {
            let u = k % users.len();
            let key = users[u].key.clone();
            let (http, base, zip) = (ctx.http.clone(), base.clone(), zip.clone());
            tokio::spawn(async move {
                let job = submit(&http, &base, &key, zip).await?;
                // Polled once a second: the time is the job's `end_time`, and a hundred jobs
                // polled every 20 ms would take the CPU the jobs run on.
                let view = wait_done_every(
                    &http,
                    &base,
                    &key,
                    &job.job_id,
                    Duration::from_secs(600),
                    Duration::from_secs(1),
                )
                .await?;
                let claimed = view["start_time"].as_str().unwrap_or_default().to_owned();
                anyhow::Ok((u, job.job_id, status_of(&view), claimed, end_ns(&view)))
            })
        });
        let submits: Vec<_> = submits.collect();
        let mut jobs = Vec::new();
        let mut claims = Vec::new();
        let mut last_end: Option<u64> = None;
        let mut failed = 0;
        for task in submits {
            match task.await.context("job task")? {
                Ok((u, id, status, claimed, ended)) => {
                    if status != "passed" {
                        failed += 1;
                        f.notes.push(format!("job {id} ended {status}"));
                    }
                    let claimed = chrono::DateTime::parse_from_rfc3339(&claimed).ok();
                    claims.push((claimed, u));
                    jobs.push((u, id));
                    last_end = last_end.max(ended);
                }
                Err(e) => {
                    failed += 1;
                    f.notes.push(format!("a submission failed: {e:#}"));
                }
            }
        }
        let drain = last_end.map(|end| end.saturating_sub(started) as f64 / 1e9);
        total.extend(drain);
        if let Some(one) = one {
            let i = s.conc_jobs as f64 * one / concurrent as f64;
            ideal.push(i);
            ratio.extend(drain.map(|d| d / i));
            f.notes.push(format!(
                "{tag}: one job alone {one:.2} s (median of {}), so ideally {} jobs ÷ {concurrent} at once take {i:.2} s; all done in {}",
                s.conc_solo_runs,
                s.conc_jobs,
                drain.map_or("?".to_owned(), |d| format!("{d:.2} s")),
            ));
        }
        errors.push(failed as f64);
        stack.ensure_alive()?;
        let ids: Vec<String> = jobs.iter().map(|(_, id)| id.clone()).collect();
        let starts = events.wait_for_starts(&ids, Duration::from_secs(10)).await;
        let mut order: Vec<(u64, usize)> = jobs
            .iter()
            .filter_map(|(u, id)| starts.get(id).map(|t| (*t, *u)))
            .collect();
        order.sort();
        let letters: String = order
            .iter()
            .map(|(_, u)| (b'A' + *u as u8) as char)
            .collect();
        // Fairness is the order in which the controller claimed the jobs (their start_time);
        // containers set up in parallel may start in a slightly different order.
        claims.sort();
        let claim_letters: String = claims
            .iter()
            .map(|(_, u)| (b'A' + *u as u8) as char)
            .collect();
        let round: std::collections::HashSet<usize> =
            claims.iter().take(s.conc_users).map(|(_, u)| *u).collect();
        first_round.push(round.len() as f64);
        f.notes
            .push(format!("{tag}: claim order by user: {claim_letters}"));
        f.check(
            solo_passed == s.conc_solo_runs,
            format!(
                "{tag}: {solo_passed}/{} jobs alone passed",
                s.conc_solo_runs
            ),
        );
        f.check(
            failed == 0,
            format!(
                "{tag}: {}/{} jobs accepted and passed",
                s.conc_jobs - failed,
                s.conc_jobs
            ),
        );
        f.check(
            order.len() == s.conc_jobs,
            format!(
                "{tag}: {}/{} container starts seen",
                order.len(),
                s.conc_jobs
            ),
        );
        f.notes
            .push(format!("{tag}: container start order by user: {letters}"));
    }
    f.metrics.push(Metric::new(
        format!(
            "{} jobs by {} users, all submitted at once → all done",
            s.conc_jobs, s.conc_users
        ),
        Unit::Secs,
        Goal::None,
        total,
    ));
    f.metrics.push(Metric::new(
        format!(
            "one job alone, submit → done ({} a run, before the queue)",
            s.conc_solo_runs
        ),
        Unit::Secs,
        Goal::None,
        alone_secs,
    ));
    f.metrics.push(Metric::new(
        format!(
            "ideal: {} jobs × one job's median ÷ {concurrent} at once",
            s.conc_jobs
        ),
        Unit::Secs,
        Goal::None,
        ideal,
    ));
    f.metrics.push(Metric::new(
        "all done / ideal (per run)",
        Unit::Ratio,
        Goal::AtMost(1.2),
        ratio,
    ));
    f.metrics.push(Metric::new(
        "errors (rejected or not passed)",
        Unit::Count,
        Goal::AtMost(0.0),
        errors,
    ));
    f.metrics.push(
        Metric::new(
            format!("users among the first {} jobs claimed", s.conc_users),
            Unit::Count,
            Goal::AtLeast(s.conc_users as f64),
            first_round,
        )
        .note("fair: every user once"),
    );
    f.notes.push(format!(
        "The controller runs --max-concurrent-jobs {concurrent} (this machine's cores, its default). A job's time runs from just before its POST to its `end_time`; one unmeasured job alone came first."
    ));
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// 7. Idle footprint

async fn idle(ctx: &Ctx) -> Result<Findings> {
    let mut f = Findings::default();
    let (mut server, mut controller) = (Vec::new(), Vec::new());
    for _ in 0..ctx.sizes.idle_runs {
        let mut stack = Stack::start(ctx.stack_options(1, &[])).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack.ensure_alive()?;
        server.push(stack.server(0).proc.memory_mb()?.rss);
        controller.push(stack.controller.proc.memory_mb()?.rss);
    }
    f.check(
        server.len() == ctx.sizes.idle_runs,
        format!("{} fresh stacks started and measured", server.len()),
    );
    f.metrics.push(Metric::new(
        "ci-server RSS (VmRSS) 0.5 s after ready",
        Unit::Mb,
        Goal::AtMost(20.0),
        server,
    ));
    f.metrics.push(Metric::new(
        "ci-controller RSS (VmRSS) 0.5 s after ready",
        Unit::Mb,
        Goal::AtMost(25.0),
        controller,
    ));
    Ok(f)
}
