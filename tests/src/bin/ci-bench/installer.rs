//! Scenario 10, the installer: a cold install of a realistic requirements file (a dozen pinned
//! packages from local wheels, `--no-index --find-links wheels`) five ways, in interleaved
//! rounds on one stack: (1) the install step of `ci submit test --no-cache` with
//! `installer = "uv"`, (2) the same with `installer = "pip"` (both from the jobs' `step`
//! events), (3) uv's own time for the same file and (4) pip's own time, each in a bare
//! `docker run --rm` of the runner image (the installer command alone, timed inside the
//! container), and (3b) = (3) with /tmp on a tmpfs. Targets: step(uv) ≤ 1.3× uv's own time,
//! step(pip) ≥ 4× step(uv). Every job must pass, its log must name the installer it was asked
//! for, and its test imports every module of every package and runs both console scripts. The
//! notes split the install steps into phases (`docker events` and the log's timestamps), to show
//! where any difference goes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ci_tests::ci_common::api::StepView;
use ci_tests::ci_common::db::{events, jobs, Db};
use ci_tests::ci_common::{EventKind, JobStatus, StepState, UserId};

use crate::dep_cache::{load_average, load_note, wheel_of, write};
use crate::scenarios::{timed, Ctx, Findings};
use crate::stack::{now_ns, DockerEvents, Stack};
use crate::stats::{percentile, Goal, Metric, Unit};

/// The install step with uv, at most this many times uv's own time for the same file.
const UV_TARGET: f64 = 1.3;
/// The install step with pip, at least this many times the one with uv.
const PIP_TARGET: f64 = 4.0;

/// The five measurements of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// (1) `ci submit test --no-cache`, `installer = "uv"`: the install step.
    StepUv,
    /// (2) the same with `installer = "pip"`.
    StepPip,
    /// (3) `uv pip install` alone in `docker run --rm`.
    OwnUv,
    /// (3b) the same with /tmp (the venv, uv's cache) on a tmpfs, as the install step keeps
    /// uv's cache: uv without the container's root filesystem.
    OwnUvTmpfs,
    /// (4) `python -m pip install` alone in `docker run --rm`.
    OwnPip,
}

/// The order of the first round; each next round starts one further along.
const ORDER: [Kind; 5] = [
    Kind::StepUv,
    Kind::OwnUv,
    Kind::StepPip,
    Kind::OwnPip,
    Kind::OwnUvTmpfs,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::StepUv => "step (uv)",
            Kind::StepPip => "step (pip)",
            Kind::OwnUv => "uv alone",
            Kind::OwnUvTmpfs => "uv alone on tmpfs",
            Kind::OwnPip => "pip alone",
        }
    }

    fn installer(self) -> &'static str {
        match self {
            Kind::StepUv | Kind::OwnUv | Kind::OwnUvTmpfs => "uv",
            Kind::StepPip | Kind::OwnPip => "pip",
        }
    }

    fn is_step(self) -> bool {
        matches!(self, Kind::StepUv | Kind::StepPip)
    }
}

/// One measurement.
struct Run {
    kind: Kind,
    round: usize,
    /// `ci submit` or `docker run` wall time, ms.
    wall_ms: f64,
    exited_ok: bool,
    tail: String,
    /// (1), (2): what the job recorded.
    job: Option<JobRecord>,
    /// (3), (3b), (4): what the container printed.
    own: Option<OwnRecord>,
}

impl Run {
    /// The figure the targets compare: the install step's duration, or the installer command's
    /// own time, in ms.
    fn install_ms(&self) -> Option<f64> {
        match (&self.job, &self.own) {
            (Some(job), _) => job.install.as_ref().and_then(InstallStep::duration_ms),
            (None, Some(own)) => Some(own.install_ms),
            (None, None) => None,
        }
    }

    /// In an install step: from the driver's first log line (said just before the installer
    /// starts) to the installer's last, in ms.
    fn installer_span_ms(&self) -> Option<f64> {
        let step = self.job.as_ref()?.install.as_ref()?;
        Some((step.last_line_ns? - step.first_line_ns?) as f64 / 1e6)
    }
}

/// What the database holds about a job.
struct JobRecord {
    id: String,
    status: JobStatus,
    install: Option<InstallStep>,
    /// The log lines of the install step, in order.
    install_log: Vec<String>,
    /// The `summary` event's text (`15 passed in 0.52s`).
    summary: Option<String>,
    /// The test step's duration, ms (the uv jobs' tests import modules that have no bytecode
    /// yet: uv does not compile it, pip does).
    test_ms: Option<f64>,
}

/// The install step, from its `step` events and the timestamps of its log lines (ns).
struct InstallStep {
    state: StepState,
    started_ns: Option<i128>,
    finished_ns: Option<i128>,
    first_line_ns: Option<i128>,
    last_line_ns: Option<i128>,
}

impl InstallStep {
    fn duration_ms(&self) -> Option<f64> {
        Some((self.finished_ns? - self.started_ns?) as f64 / 1e6)
    }
}

/// What a bare `docker run` of an installer printed.
struct OwnRecord {
    venv_ms: f64,
    install_ms: f64,
    /// How many of the generated distributions the environment has afterwards.
    installed: usize,
    output: String,
}

fn ns(t: chrono::DateTime<chrono::Utc>) -> i128 {
    t.timestamp_nanos_opt().unwrap_or(0) as i128
}

pub async fn run(ctx: &Ctx) -> Result<Findings> {
    let load_start = load_average();
    let storage = docker_storage_driver();
    let mut stack = Stack::start(ctx.stack_options(1, &[])).await?;
    let user = stack.db.user("Bench").await;
    let docker_events =
        DockerEvents::start(stack.prefix(), now_ns().saturating_sub(1_000_000_000))?;
    let projects = match &ctx.installer_wheels {
        Some(wheels) => Projects::from_wheels(&ctx.work, wheels)?,
        None => Projects::create(&ctx.work)?,
    };
    let url = stack.server(0).url.clone();
    let pool = stack.db.pool.clone();
    let timeout = ctx.job_timeout();
    let submit = |dir: &Path| {
        let mut cmd = tokio::process::Command::new(ci_tests::bin("ci"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CI_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["submit", "test", "--no-cache"])
            .current_dir(dir)
            .env("CI_SERVER_URL", &url)
            .env("CI_API_KEY", &user.key)
            .env("CI_CONFIG", dir.join("no-such-config"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("NO_COLOR", "1");
        cmd
    };
    let mut last_job: Option<String> = None;
    let mut measure = async |kind: Kind, round: usize| -> Result<Run> {
        if kind.is_step() {
            let dir = match kind {
                Kind::StepUv => &projects.uv,
                _ => &projects.pip,
            };
            let (wall, exited_ok, tail) = timed(submit(dir), timeout).await?;
            let job = newest_job(&pool, user.id, last_job.as_deref()).await?;
            last_job = job.as_ref().map(|j| j.id.clone()).or(last_job.take());
            Ok(Run {
                kind,
                round,
                wall_ms: wall.as_secs_f64() * 1000.0,
                exited_ok,
                tail,
                job,
                own: None,
            })
        } else {
            let (wall, exited_ok, output) = own_install(
                ctx,
                &projects.uv,
                kind.installer(),
                kind == Kind::OwnUvTmpfs,
                timeout,
            )
            .await?;
            let own = parse_own(&output);
            let tail = output.lines().rev().take(15).collect::<Vec<_>>();
            Ok(Run {
                kind,
                round,
                wall_ms: wall.as_secs_f64() * 1000.0,
                exited_ok: exited_ok && own.is_some(),
                tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                job: None,
                own,
            })
        }
    };

    // Unmeasured: one of each warms Docker, the page cache and the image's Python and pip.
    for kind in ORDER {
        let run = measure(kind, 0).await?;
        if !run.exited_ok {
            bail!("warm-up {} failed:\n{}", kind.label(), run.tail);
        }
    }

    let n = ctx.sizes.installer_runs;
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..n {
        for i in 0..ORDER.len() {
            let kind = ORDER[(round + i) % ORDER.len()];
            let run = measure(kind, round).await?;
            runs.push(run);
        }
        stack.ensure_alive()?;
    }
    let mut f = Findings::default();
    let of = |kind: Kind| runs.iter().filter(move |r| r.kind == kind);
    for run in runs.iter().filter(|r| !r.exited_ok) {
        f.notes.push(format!(
            "round {}: {} failed:\n{}",
            run.round + 1,
            run.kind.label(),
            run.tail
        ));
    }

    // Correctness: every job passed with the installer it asked for, its test imported every
    // module and ran the console scripts; every bare install installed the dozen packages.
    let tests = projects.tests;
    for kind in [Kind::StepUv, Kind::StepPip] {
        let passed = of(kind)
            .filter(|r| {
                r.exited_ok
                    && r.job.as_ref().is_some_and(|j| {
                        j.status == JobStatus::Passed
                            && j.install
                                .as_ref()
                                .is_some_and(|s| s.state == StepState::Passed)
                    })
            })
            .count();
        f.check(
            passed == n,
            format!(
                "{}: {passed}/{n} `ci submit test --no-cache` exited 0, install step and job passed",
                kind.label()
            ),
        );
        let said = format!("ci-install: installing with {}", kind.installer());
        let other = match kind.installer() {
            "uv" => "ci-install: installing with pip",
            _ => "ci-install: installing with uv",
        };
        let named = of(kind)
            .filter(|r| {
                r.job.as_ref().is_some_and(|j| {
                    j.install_log.iter().any(|l| l.starts_with(&said))
                        && !j.install_log.iter().any(|l| l.starts_with(other))
                        && !j.install_log.iter().any(|l| l.contains("instead"))
                })
            })
            .count();
        f.check(
            named == n,
            format!(
                "{}: {named}/{n} install logs say \"{said}\" (and never the other)",
                kind.label()
            ),
        );
        let imported = of(kind)
            .filter(|r| {
                r.job.as_ref().is_some_and(|j| {
                    j.summary
                        .as_deref()
                        .is_some_and(|s| s.starts_with(&format!("{tests} passed in ")))
                })
            })
            .count();
        f.check(
            imported == n,
            format!(
                "{}: {imported}/{n} tests say \"{tests} passed\" ({})",
                kind.label(),
                projects.checks
            ),
        );
    }
    for kind in [Kind::OwnUv, Kind::OwnPip, Kind::OwnUvTmpfs] {
        let ok = of(kind)
            .filter(|r| {
                r.exited_ok
                    && r.own
                        .as_ref()
                        .is_some_and(|o| o.installed == projects.packages)
            })
            .count();
        f.check(
            ok == n,
            format!(
                "{}: {ok}/{n} `docker run` exited 0 with all {} packages installed",
                kind.label(),
                projects.packages
            ),
        );
    }

    // Figures.
    let install = |kind: Kind| of(kind).filter_map(Run::install_ms).collect::<Vec<f64>>();
    let wall = |kind: Kind| of(kind).map(|r| r.wall_ms).collect::<Vec<f64>>();
    // (over, under) of one round, for each round that has both.
    let pairs = |over: Kind, under: Kind, value: fn(&Run) -> Option<f64>| {
        (0..n)
            .filter_map(|round| {
                let get = |kind: Kind| {
                    runs.iter()
                        .find(|r| r.round == round && r.kind == kind)
                        .and_then(value)
                };
                Some((get(over)?, get(under)?))
            })
            .collect::<Vec<(f64, f64)>>()
    };
    let per_round = |over: Kind, under: Kind| {
        pairs(over, under, Run::install_ms)
            .into_iter()
            .map(|(a, b)| a / b)
            .collect::<Vec<f64>>()
    };
    f.metrics.push(Metric::new(
        "(1) install step, `installer = \"uv\"` (step started → finished)",
        Unit::Ms,
        Goal::None,
        install(Kind::StepUv),
    ));
    f.metrics.push(Metric::new(
        "(2) install step, `installer = \"pip\"`",
        Unit::Ms,
        Goal::None,
        install(Kind::StepPip),
    ));
    f.metrics.push(Metric::new(
        "(3) uv's own time: `uv pip install` in `docker run` (timed inside)",
        Unit::Ms,
        Goal::None,
        install(Kind::OwnUv),
    ));
    f.metrics.push(Metric::new(
        "(3b) uv alone with /tmp on tmpfs (where the step keeps uv's cache)",
        Unit::Ms,
        Goal::None,
        install(Kind::OwnUvTmpfs),
    ));
    f.metrics.push(Metric::new(
        "(4) pip's own time: `python -m pip install` in `docker run`",
        Unit::Ms,
        Goal::None,
        install(Kind::OwnPip),
    ));
    f.metrics.push(Metric::new(
        "step (uv) / uv's own time (same round)",
        Unit::Ratio,
        Goal::AtMost(UV_TARGET),
        per_round(Kind::StepUv, Kind::OwnUv),
    ));
    f.metrics.push(Metric::new(
        "step (pip) / step (uv) (same round)",
        Unit::Ratio,
        Goal::AtLeast(PIP_TARGET),
        per_round(Kind::StepPip, Kind::StepUv),
    ));
    f.metrics.push(Metric::new(
        "step (uv) / uv alone on tmpfs (same round)",
        Unit::Ratio,
        Goal::None,
        per_round(Kind::StepUv, Kind::OwnUvTmpfs),
    ));
    f.metrics.push(Metric::new(
        "(1) − (3): the install step beyond uv's own time (same round)",
        Unit::Ms,
        Goal::None,
        pairs(Kind::StepUv, Kind::OwnUv, Run::install_ms)
            .into_iter()
            .map(|(a, b)| a - b)
            .collect(),
    ));
    f.metrics.push(Metric::new(
        "in the steps, the installer's output span (first → last line): pip / uv",
        Unit::Ratio,
        Goal::None,
        pairs(Kind::StepPip, Kind::StepUv, Run::installer_span_ms)
            .into_iter()
            .map(|(a, b)| a / b)
            .collect(),
    ));
    f.metrics.push(Metric::new(
        "pip's own / uv's own time (same round)",
        Unit::Ratio,
        Goal::None,
        per_round(Kind::OwnPip, Kind::OwnUv),
    ));
    f.metrics.push(Metric::new(
        "`ci submit test --no-cache` wall time, uv",
        Unit::Ms,
        Goal::None,
        wall(Kind::StepUv),
    ));
    f.metrics.push(Metric::new(
        "`ci submit test --no-cache` wall time, pip",
        Unit::Ms,
        Goal::None,
        wall(Kind::StepPip),
    ));

    // Where the time goes.
    let starts = docker_events.first("start");
    let uv = StepPhases::of(of(Kind::StepUv), &starts);
    let pip = StepPhases::of(of(Kind::StepPip), &starts);
    f.notes.push(uv.note(Kind::StepUv));
    f.notes.push(pip.note(Kind::StepPip));
    for kind in [Kind::OwnUv, Kind::OwnPip, Kind::OwnUvTmpfs] {
        f.notes.push(own_phases(kind, of(kind)));
    }
    f.notes.push(uv_reports(&runs));
    f.notes.push(reading(&uv, &pip, &runs));
    f.notes.push(format!(
        "{n} rounds on one stack and one user, each running the five in turn, each round starting \
         one further along ({}, then rotated), after one unmeasured run of each. The project: \
         {}; `requirements.txt` pins all {} (`--no-index`, `--find-links wheels`); its test \
         checks {} ({tests} tests). (1) and (2) are \
         `ci submit test --no-cache` (no dependency cache and no pip/uv cache: a cold install \
         each time) of the same project but for `installer` under `[tool.ci]`; their figure is \
         the install step's `started_at` → `finished_at` (its `step` events; the step starts \
         once its container exists, just before Docker starts it, and ends once it exited and \
         its log was read). (3) and (4) are `docker run --rm --user 1000:1000 -e HOME=/tmp -v \
         <project>:/w:ro -w /w <image> sh -c '...'`: `python3 -m venv --system-site-packages \
         --without-pip /tmp/v`, then the installer command alone, `uv pip install --python \
         /tmp/v/bin/python -r requirements.txt` or `/tmp/v/bin/python -m pip install -r \
         requirements.txt` (with `PIP_DISABLE_PIP_VERSION_CHECK=1`, as in the install step), \
         timed with `date +%s%N` before and after it inside the container; their wall time \
         (container start and removal included) is in the phase note. (3b) is (3) with \
         `--tmpfs /tmp:rw,nosuid,nodev,size=256m`, the job containers' /tmp. Differences: (3) \
         and (4) write the venv and uv's cache (its default, empty in a fresh container, with \
         its default link mode) to the container's root filesystem (Docker storage driver: \
         {storage}), (3b) to memory; the install step writes the venv to a volume \
         (/workspace/deps) and, with `UV_NO_CACHE=1`, uv's temporary cache to its /tmp tmpfs, \
         copying (`UV_LINK_MODE=copy`), within the job's limits (1 CPU, 1 GiB by default), \
         where the bare runs have none. pip compiles every module to bytecode as it installs \
         (`PYTHONDONTWRITEBYTECODE` does not stop it); uv does not by default.",
        ORDER.map(Kind::label).join(", "),
        projects.shape,
        projects.packages,
        projects.checks
    ));
    f.notes.push(format!(
        "{}. The \
         five runs of a round follow each other, so that other work on the machine (such as \
         other Docker test runs on a shared machine, which come and go) weighs on all five \
         alike: compare the per-round ratios, not runs taken apart, and mind the ranges.",
        load_note(load_start, "")
    ));
    Ok(f)
}

/// Docker's storage driver (`overlay2`, `fuse-overlayfs`, ...): where containers' root
/// filesystems, and so the bare runs' venvs, live.
fn docker_storage_driver() -> String {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The user's newest job, if it is not `previous`: its status, install step and summary.
async fn newest_job(pool: &Db, user: UserId, previous: Option<&str>) -> Result<Option<JobRecord>> {
    let Some(job) = jobs::list_for_user(pool, user, 1, None).await?.pop() else {
        return Ok(None);
    };
    if previous == Some(job.id.to_string().as_str()) {
        return Ok(None);
    }
    let mut install: Option<InstallStep> = None;
    let mut install_log = Vec::new();
    let mut summary = None;
    let mut test_ms = None;
    let mut in_install = false;
    for event in events::list_after(pool, job.id, 0, 100_000).await? {
        match event.kind {
            EventKind::Step => {
                let view: StepView = serde_json::from_str(event.data.as_deref().unwrap_or(""))
                    .context("a step event's data")?;
                in_install = view.name == "install" && view.state == StepState::Running;
                if view.name == "test" {
                    if let (Some(s), Some(e)) = (view.started_at, view.finished_at) {
                        test_ms = Some((ns(e) - ns(s)) as f64 / 1e6);
                    }
                }
                if view.name == "install" {
                    let step = install.get_or_insert(InstallStep {
                        state: view.state,
                        started_ns: None,
                        finished_ns: None,
                        first_line_ns: None,
                        last_line_ns: None,
                    });
                    step.state = view.state;
                    step.started_ns = view.started_at.map(ns).or(step.started_ns);
                    step.finished_ns = view.finished_at.map(ns).or(step.finished_ns);
                }
            }
            EventKind::Log if in_install => {
                if let Some(step) = install.as_mut() {
                    step.first_line_ns.get_or_insert(ns(event.ts));
                    step.last_line_ns = Some(ns(event.ts));
                }
                install_log.push(event.text);
            }
            EventKind::Summary => summary = Some(event.text),
            _ => {}
        }
    }
    Ok(Some(JobRecord {
        id: job.id.to_string(),
        status: job.status,
        install,
        install_log,
        summary,
        test_ms,
    }))
}

/// `docker run` of the runner image (in the benchmark's runtime) with only the venv and the installer command, each timed
/// inside the container (`tmpfs`: with /tmp on a tmpfs, as in a job's containers); returns
/// (wall time, success, stdout + stderr and the exit status). The container carries no
/// `ci.prefix` label: the controller removes containers of its prefix that no job owns.
async fn own_install(
    ctx: &Ctx,
    project: &Path,
    installer: &str,
    tmpfs: bool,
    timeout: Duration,
) -> Result<(Duration, bool, String)> {
    let command = match installer {
        "uv" => "uv pip install --python /tmp/v/bin/python -r requirements.txt",
        _ => "/tmp/v/bin/python -m pip install -r requirements.txt",
    };
    let script = format!(
        "set -e\n\
         t0=$(date +%s%N)\n\
         python3 -m venv --system-site-packages --without-pip /tmp/v\n\
         t1=$(date +%s%N)\n\
         {command}\n\
         t2=$(date +%s%N)\n\
         echo \"ci-bench-times venv=$((t1 - t0)) install=$((t2 - t1))\"\n\
         /tmp/v/bin/python -c \"{COUNT_INSTALLED}\"\n"
    );
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(["run", "--rm"])
        .args(ctx.docker_run_runtime())
        .args(["--user", "1000:1000", "-e", "HOME=/tmp"])
        .args(["-e", "PIP_DISABLE_PIP_VERSION_CHECK=1"]);
    if tmpfs {
        cmd.args(["--tmpfs", "/tmp:rw,nosuid,nodev,size=256m"]);
    }
    cmd.arg("-v")
        .arg(format!("{}:/w:ro", project.display()))
        .args(["-w", "/w", &ctx.image, "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("`docker run` of {installer} took longer than {timeout:?}"))?
        .context("cannot run docker")?;
    let wall = start.elapsed();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        text.push_str(&format!("\n`docker run` ended with {}", output.status));
    }
    Ok((wall, output.status.success(), text))
}

/// Prints how many distributions the venv at /tmp/v has of its own (not the image's).
const COUNT_INSTALLED: &str = "import glob, importlib.metadata as m; print('ci-bench-installed', \
    len(list(m.distributions(path=glob.glob('/tmp/v/lib/python3*/site-packages')))))";

fn parse_own(output: &str) -> Option<OwnRecord> {
    let field = |line: &str, key: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let times = output.lines().find(|l| l.starts_with("ci-bench-times "))?;
    let installed = output
        .lines()
        .find_map(|l| l.strip_prefix("ci-bench-installed "))?
        .trim()
        .parse()
        .ok()?;
    Some(OwnRecord {
        venv_ms: field(times, "venv=")? / 1e6,
        install_ms: field(times, "install=")? / 1e6,
        installed,
        output: output.to_owned(),
    })
}

/// The median of `samples`, if there are any.
fn median(mut samples: Vec<f64>) -> Option<f64> {
    samples.sort_by(f64::total_cmp);
    (!samples.is_empty()).then(|| percentile(&samples, 50.0))
}

/// A median in ms, or "—".
fn ms(value: Option<f64>) -> String {
    value.map_or("—".to_owned(), |v| format!("{v:.0}"))
}

/// The install step of one kind's jobs in phases (medians, ms): from its `step` event to
/// Docker's `start` of its container (the job's first), to the driver's first line (Python, the
/// venv, the installer's `--version`), to the installer's last line, to the step's end; and the
/// test step after it.
struct StepPhases {
    to_start: Option<f64>,
    to_first: Option<f64>,
    installer: Option<f64>,
    to_end: Option<f64>,
    total: Option<f64>,
    test: Option<f64>,
}

impl StepPhases {
    fn of<'a>(runs: impl Iterator<Item = &'a Run>, starts: &HashMap<String, u64>) -> Self {
        let mut columns: [Vec<f64>; 5] = Default::default();
        let mut tests = Vec::new();
        for run in runs {
            let Some(job) = &run.job else { continue };
            tests.extend(job.test_ms);
            let Some(step) = &job.install else { continue };
            let started = starts.get(&job.id).map(|t| *t as i128);
            let spans = [
                step.started_ns.zip(started).map(|(s, c)| c - s),
                started.zip(step.first_line_ns).map(|(c, l)| l - c),
                step.first_line_ns
                    .zip(step.last_line_ns)
                    .map(|(a, b)| b - a),
                step.last_line_ns.zip(step.finished_ns).map(|(l, e)| e - l),
                step.started_ns.zip(step.finished_ns).map(|(s, e)| e - s),
            ];
            for (column, span) in columns.iter_mut().zip(spans) {
                column.extend(span.map(|ns| ns as f64 / 1e6));
            }
        }
        let [to_start, to_first, installer, to_end, total] = columns.map(median);
        Self {
            to_start,
            to_first,
            installer,
            to_end,
            total,
            test: median(tests),
        }
    }

    /// The step's time outside the installer (container start, Python and the venv, the end).
    fn outside(&self) -> Option<f64> {
        Some(self.to_start? + self.to_first? + self.to_end?)
    }

    fn note(&self, kind: Kind) -> String {
        format!(
            "{}: the install step in phases, medians in ms (its `step` events, `docker events` \
             and the log lines' Docker timestamps, one host clock): step started → container \
             started {}; container started → the driver's first line (the supervisor's and \
             the driver's Python, the venv, the installer's version) {}; first line → the installer's last line {}; \
             last line → step finished (exit, log read, recorded) {}; whole step {}. Then the \
             test step {}",
            kind.label(),
            ms(self.to_start),
            ms(self.to_first),
            ms(self.installer),
            ms(self.to_end),
            ms(self.total),
            ms(self.test),
        )
    }
}

/// One note: the bare runs of `kind` in phases (medians, ms).
fn own_phases<'a>(kind: Kind, runs: impl Iterator<Item = &'a Run>) -> String {
    let (mut venv, mut install, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    for run in runs {
        if let Some(own) = &run.own {
            venv.push(own.venv_ms);
            install.push(own.install_ms);
            wall.push(run.wall_ms);
        }
    }
    format!(
        "{}: `docker run` medians in ms: `python3 -m venv` {}; the installer command {}; the \
         whole `docker run --rm` (container start and removal, the venv, the install and the \
         check that counts the installed packages) {}",
        kind.label(),
        ms(median(venv)),
        ms(median(install)),
        ms(median(wall))
    )
}

/// uv's own account of its work in `kind`'s runs ("Resolved/Prepared/Installed N packages in
/// T"): the medians of the three, ms.
fn uv_phases(runs: &[Run], kind: Kind) -> [Option<f64>; 3] {
    let mut columns: [Vec<f64>; 3] = Default::default();
    for run in runs.iter().filter(|r| r.kind == kind) {
        let lines: Vec<&str> = match (&run.job, &run.own) {
            (Some(job), _) => job.install_log.iter().map(String::as_str).collect(),
            (None, Some(own)) => own.output.lines().collect(),
            (None, None) => continue,
        };
        for (column, word) in columns
            .iter_mut()
            .zip(["Resolved", "Prepared", "Installed"])
        {
            column.extend(lines.iter().find_map(|l| uv_phase(l, word)));
        }
    }
    columns.map(median)
}

/// One note: uv's own report of its phases, in the install step and alone.
fn uv_reports(runs: &[Run]) -> String {
    let kinds = [Kind::StepUv, Kind::OwnUv, Kind::OwnUvTmpfs].map(|kind| {
        let [resolved, prepared, installed] = uv_phases(runs, kind);
        format!(
            "{}: resolved {}, prepared {}, installed {}",
            kind.label(),
            ms(resolved),
            ms(prepared),
            ms(installed)
        )
    });
    format!(
        "uv's own report of its phases (\"Resolved/Prepared/Installed 12 packages in …\"), \
         medians in ms: {}",
        kinds.join("; ")
    )
}

/// One note: what the medians say about the two targets.
fn reading(uv: &StepPhases, pip: &StepPhases, runs: &[Run]) -> String {
    let own = |kind: Kind| {
        median(
            runs.iter()
                .filter(|r| r.kind == kind)
                .filter_map(Run::install_ms)
                .collect(),
        )
    };
    let [_, step_prepared, step_installed] = uv_phases(runs, Kind::StepUv);
    let [_, own_prepared, _] = uv_phases(runs, Kind::OwnUv);
    let ratio = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .map_or("—".to_owned(), |(a, b)| format!("{:.2}×", a / b))
    };
    format!(
        "Reading the medians. The uv step is {} ms outside uv (container start, Python and the \
         venv, the end) plus uv's own {} ms, of which uv reports {} ms installing (copying the \
         unpacked files into the venv on the job's volume) and {} ms preparing (unpacking into \
         its cache on /tmp, a tmpfs). uv alone (3) spends {} ms preparing, unpacking into its \
         cache on the container's root filesystem, and only {} ms in all with /tmp on tmpfs \
         (3b): so (1) / (3) sets two disk-bound runs against each other, each slow in its own \
         place; against (3b) the step is {}. For pip: the installers themselves differ {} in \
         the steps (first → last line; pip {} ms, uv {} ms), before the costs both steps share; \
         pip's step spends {} ms before its first line, uv's {} (uv's version is `uv \
         --version`, pip's is read from its metadata). At {} ms for the pip step, 4× would need the uv step at {} \
         ms or less. After the install, the uv job's test step takes {} ms, the pip job's {}: \
         uv writes no bytecode (pip compiles every module), so the tests compile what they \
         import, in memory (`PYTHONDONTWRITEBYTECODE=1`), every run.",
        ms(uv.outside()),
        ms(uv.installer),
        ms(step_installed),
        ms(step_prepared),
        ms(own_prepared),
        ms(own(Kind::OwnUvTmpfs)),
        ratio(uv.total, own(Kind::OwnUvTmpfs)),
        ratio(pip.installer, uv.installer),
        ms(pip.installer),
        ms(uv.installer),
        ms(pip.to_first),
        ms(uv.to_first),
        ms(pip.total),
        ms(pip.total.map(|t| t / PIP_TARGET)),
        ms(uv.test),
        ms(pip.test),
    )
}

/// The time in ms of a uv summary line such as `Installed 12 packages in 45ms` (or `in 1.20s`).
fn uv_phase(line: &str, word: &str) -> Option<f64> {
    let rest = line.trim().strip_prefix(word)?;
    let time = rest.rsplit(" in ").next()?.trim();
    if let Some(ms) = time.strip_suffix("ms") {
        ms.parse().ok()
    } else if let Some(s) = time.strip_suffix('s') {
        s.parse::<f64>().ok().map(|s| s * 1000.0)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a dozen packages with the shapes of real ones

/// One generated distribution.
struct Package {
    dist: &'static str,
    version: &'static str,
    /// Modules besides the packages' `__init__.py` files.
    modules: usize,
    /// Sub-packages the modules are spread over (0: all at the top).
    subpackages: usize,
    /// Average module size, KB (each is 0.4× to 1.6× of it).
    kb: usize,
    /// `Requires-Dist` lines.
    requires: &'static [&'static str],
    /// A console script of the same name (`<module>.cli:main`).
    script: bool,
}

/// Shaped after a typical test requirements file: an HTTP client with its helpers, a CLI
/// toolkit, a data library with a table file, a schema library, a test helper, a small
/// compatibility module; dependencies between most of them and two console scripts.
const PACKAGES: [Package; 12] = [
    Package {
        dist: "benchinst-core",
        version: "2.4.1",
        modules: 16,
        subpackages: 2,
        kb: 8,
        requires: &[],
        script: false,
    },
    Package {
        dist: "benchinst-text",
        version: "1.9.0",
        modules: 9,
        subpackages: 0,
        kb: 10,
        requires: &["benchinst-core>=2.0,<3"],
        script: false,
    },
    Package {
        dist: "benchinst-units",
        version: "0.12.3",
        modules: 5,
        subpackages: 0,
        kb: 6,
        requires: &[],
        script: false,
    },
    Package {
        dist: "benchinst-config",
        version: "3.1.0",
        modules: 7,
        subpackages: 0,
        kb: 7,
        requires: &["benchinst-core>=2.2"],
        script: false,
    },
    Package {
        dist: "benchinst-http",
        version: "2.28.2",
        modules: 22,
        subpackages: 3,
        kb: 12,
        requires: &[
            "benchinst-core>=2.1",
            "benchinst-text>=1.5",
            "benchinst-units<1",
        ],
        script: false,
    },
    Package {
        dist: "benchinst-cli",
        version: "8.1.7",
        modules: 13,
        subpackages: 1,
        kb: 10,
        requires: &["benchinst-config>=3", "benchinst-text>=1.8"],
        script: true,
    },
    Package {
        dist: "benchinst-data",
        version: "1.26.4",
        modules: 38,
        subpackages: 4,
        kb: 16,
        requires: &["benchinst-units>=0.10"],
        script: false,
    },
    Package {
        dist: "benchinst-schema",
        version: "2.6.0",
        modules: 24,
        subpackages: 2,
        kb: 14,
        requires: &["benchinst-data>=1.20", "benchinst-core>=2.4"],
        script: false,
    },
    Package {
        dist: "benchinst-report",
        version: "0.9.2",
        modules: 11,
        subpackages: 1,
        kb: 9,
        requires: &["benchinst-schema>=2", "benchinst-text"],
        script: true,
    },
    Package {
        dist: "benchinst-plugins",
        version: "1.4.0",
        modules: 8,
        subpackages: 0,
        kb: 6,
        requires: &["benchinst-core"],
        script: false,
    },
    Package {
        dist: "benchinst-testing",
        version: "7.4.3",
        modules: 19,
        subpackages: 2,
        kb: 10,
        requires: &[
            "benchinst-core>=2",
            "benchinst-data>=1.24",
            "benchinst-plugins>=1.3",
        ],
        script: false,
    },
    Package {
        dist: "benchinst-compat",
        version: "1.16.0",
        modules: 1,
        subpackages: 0,
        kb: 30,
        requires: &[],
        script: false,
    },
];

/// Rows of `benchinst_data/tables/units.json`.
const TABLE_ROWS: usize = 2_000;

impl Package {
    fn module(&self) -> String {
        self.dist.replace('-', "_")
    }

    /// The distributions it requires.
    fn dependencies(&self) -> Vec<&'static str> {
        self.requires
            .iter()
            .map(|r| {
                r.split(['<', '>', '=', '!', '~', ' ', ','])
                    .next()
                    .unwrap_or(r)
            })
            .collect()
    }

    /// Its files (path, text), and how many `.py` files it has.
    fn files(&self, rng: &mut Rng) -> (Vec<(String, String)>, usize) {
        let module = self.module();
        let mut files = Vec::new();
        let imports: String = self
            .dependencies()
            .iter()
            .map(|d| format!("import {}\n", d.replace('-', "_")))
            .collect();
        let listed: String = self
            .dependencies()
            .iter()
            .map(|d| format!("{}.describe(), ", d.replace('-', "_")))
            .collect();
        let mut init = format!(
            "\"\"\"{dist}: {sentence}\"\"\"\n\n{imports}\n__version__ = \"{version}\"\n\
             DISTRIBUTION = \"{dist}\"\n\n\n\
             def describe():\n    return f\"{{DISTRIBUTION}} {{__version__}}\"\n\n\n\
             def dependencies():\n    return [{listed}]\n",
            dist = self.dist,
            version = self.version,
            sentence = rng.sentence(8),
        );
        if self.dist == "benchinst-data" {
            init.push_str(
                "\n\ndef table():\n    import json\n    import os\n\n    \
                 path = os.path.join(os.path.dirname(__file__), \"tables\", \"units.json\")\n    \
                 with open(path, encoding=\"utf-8\") as f:\n        return json.load(f)\n",
            );
            files.push((format!("{module}/tables/units.json"), table(rng)));
        }
        files.push((format!("{module}/__init__.py"), init));
        let mut py = 1;
        let subs: Vec<String> = (0..self.subpackages)
            .map(|i| format!("{}{i}", rng.word()))
            .collect();
        for sub in &subs {
            files.push((
                format!("{module}/{sub}/__init__.py"),
                format!("\"\"\"{}\"\"\"\n", rng.sentence(10)),
            ));
            py += 1;
        }
        for i in 0..self.modules {
            let dir = match subs.len() {
                0 => module.clone(),
                // A third of the modules at the top, the rest spread over the sub-packages.
                k => match i % (k + 1) {
                    0 => module.clone(),
                    j => format!("{module}/{}", subs[j - 1]),
                },
            };
            let name = format!("{}_{i}", rng.word());
            let size = self.kb * 1024 * (4 + rng.below(13)) as usize / 10;
            files.push((format!("{dir}/{name}.py"), python_module(rng, size)));
            py += 1;
        }
        if self.script {
            files.push((
                format!("{module}/cli.py"),
                format!(
                    "import sys\n\nfrom {module} import __version__\n\n\n\
                     def main(argv=None):\n    \
                     argv = sys.argv[1:] if argv is None else argv\n    \
                     if \"--version\" in argv:\n        \
                     print(\"{dist} \" + __version__)\n        return 0\n    \
                     print(\"usage: {dist} [--version]\", file=sys.stderr)\n    return 2\n",
                    dist = self.dist
                ),
            ));
            py += 1;
        }
        (files, py)
    }

    fn entry_points(&self) -> Option<String> {
        self.script.then(|| {
            format!(
                "[console_scripts]\n{} = {}.cli:main\n",
                self.dist,
                self.module()
            )
        })
    }
}

/// A small deterministic generator (SplitMix64), so every run installs the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }

    fn name(&mut self) -> String {
        format!("{}_{}", self.word(), self.word())
    }

    fn sentence(&mut self, words: u64) -> String {
        let n = words / 2 + self.below(words);
        let mut text: Vec<&str> = (0..n.max(2)).map(|_| self.word()).collect();
        let first = text[0];
        let capital = first[..1].to_uppercase() + &first[1..];
        text[0] = "";
        format!("{capital}{}.", text.join(" "))
    }
}

/// Identifiers and prose (no Python keywords, no builtins that matter).
const WORDS: [&str; 64] = [
    "account", "adapter", "archive", "batch", "buffer", "cache", "channel", "chunk", "client",
    "column", "config", "context", "cursor", "decode", "default", "digest", "encode", "entry",
    "event", "field", "filter", "frame", "handler", "header", "index", "item", "key", "layer",
    "limit", "loader", "mapping", "marker", "merge", "message", "option", "parse", "path",
    "payload", "pool", "query", "queue", "reader", "record", "region", "render", "request",
    "response", "result", "retry", "route", "schema", "scope", "session", "signal", "source",
    "stream", "table", "token", "unit", "update", "value", "version", "window", "writer",
];

/// A module of plausible Python (constants, functions and classes) of about `size` bytes.
fn python_module(rng: &mut Rng, size: usize) -> String {
    let mut out = format!(
        "\"\"\"{}\n\n{} {}\n\"\"\"\n\nfrom __future__ import annotations\n\n\
         import functools\nimport itertools\nimport re\n\n",
        rng.sentence(8),
        rng.sentence(14),
        rng.sentence(14)
    );
    for _ in 0..1 + rng.below(4) {
        let _ = writeln!(
            out,
            "{}_{} = {}",
            rng.word().to_uppercase(),
            rng.word().to_uppercase(),
            rng.below(100_000)
        );
    }
    let _ = writeln!(out, "_PATTERN = re.compile(r\"^[a-z]+_{}$\")", rng.word());
    let mut n = 0;
    while out.len() < size {
        n += 1;
        out.push_str("\n\n");
        match rng.below(4) {
            0 => {
                let _ = write!(
                    out,
                    "def {name}_{n}(value, {a}=None, *, {b}={k}):\n    \"\"\"{doc}\n\n    {more}\n    \"\"\"\n    \
                     result = []\n    for index, item in enumerate(value or ()):\n        \
                     if index % {m} == 0:\n            result.append((item, {b}))\n        \
                     elif {a} is not None:\n            result.append({a})\n    return result\n",
                    name = rng.name(),
                    a = rng.name(),
                    b = format!("{}_size", rng.word()),
                    k = rng.below(64),
                    m = 2 + rng.below(7),
                    doc = rng.sentence(10),
                    more = rng.sentence(20),
                );
            }
            1 => {
                let _ = write!(
                    out,
                    "@functools.lru_cache(maxsize={size})\ndef {name}_{n}(text):\n    \"\"\"{doc}\"\"\"\n    \
                     if not _PATTERN.match(text):\n        return None\n    \
                     parts = text.split(\"_\")\n    return \"-\".join(reversed(parts)) * {k}\n",
                    size = 16 << rng.below(4),
                    name = rng.name(),
                    doc = rng.sentence(12),
                    k = 1 + rng.below(3),
                );
            }
            2 => {
                let class: String = (0..2)
                    .map(|_| {
                        let w = rng.word();
                        w[..1].to_uppercase() + &w[1..]
                    })
                    .collect();
                let _ = write!(
                    out,
                    "class {class}{n}:\n    \"\"\"{doc}\n\n    {more}\n    \"\"\"\n\n    \
                     {attr} = {k}\n\n    def __init__(self, {p}=None):\n        \
                     self.{p} = {p}\n        self._cache = {{}}\n\n    \
                     def {m1}(self, key):\n        \"\"\"{doc2}\"\"\"\n        \
                     if key in self._cache:\n            return self._cache[key]\n        \
                     value = str(key) * {r}\n        self._cache[key] = value\n        return value\n\n    \
                     def {m2}(self, *items):\n        \
                     return [self.{m1}(item) for item in itertools.islice(items, {k})]\n",
                    doc = rng.sentence(10),
                    more = rng.sentence(24),
                    attr = rng.name().to_uppercase(),
                    k = 1 + rng.below(50),
                    p = rng.word(),
                    m1 = rng.name(),
                    doc2 = rng.sentence(12),
                    r = 1 + rng.below(4),
                    m2 = rng.name(),
                );
            }
            _ => {
                let keys: Vec<String> = (0..3 + rng.below(6))
                    .map(|i| format!("    \"{}_{i}\": {},", rng.name(), rng.below(1000)))
                    .collect();
                let _ = write!(
                    out,
                    "{}_{n} = {{\n{}\n}}\n",
                    rng.name().to_uppercase(),
                    keys.join("\n")
                );
            }
        }
    }
    out
}

/// The data package's table: JSON rows of names, symbols and factors.
fn table(rng: &mut Rng) -> String {
    let rows: Vec<String> = (0..TABLE_ROWS)
        .map(|i| {
            format!(
                "  {{\"id\": {i}, \"name\": \"{}\", \"symbol\": \"{}{}\", \"factor\": {}.{:04}, \
                 \"note\": \"{}\"}}",
                rng.name(),
                &rng.word()[..2],
                rng.below(100),
                rng.below(1000),
                rng.below(10_000),
                rng.sentence(6)
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

/// The generated projects: the same files but for `installer` under `[tool.ci]`.
struct Projects {
    uv: PathBuf,
    pip: PathBuf,
    /// How many distributions the requirements pin.
    packages: usize,
    /// How many tests the test file has.
    tests: usize,
    /// What the requirements install, for the notes.
    shape: String,
    /// What the test checks, for the notes.
    checks: &'static str,
}

impl Projects {
    fn create(root: &Path) -> Result<Self> {
        let mut rng = Rng(0x5EED_1057_A11E_D000);
        let mut wheels = Vec::new();
        let mut expected = String::new();
        let (mut files, mut bytes, mut modules, mut data_bytes) = (0, 0, 0, 0);
        for package in &PACKAGES {
            let (package_files, py) = package.files(&mut rng);
            files += package_files.len();
            bytes += package_files.iter().map(|(_, t)| t.len()).sum::<usize>();
            modules += py;
            data_bytes += package_files
                .iter()
                .filter(|(path, _)| path.ends_with(".json"))
                .map(|(_, t)| t.len())
                .sum::<usize>();
            let requires: Vec<&str> = package.requires.to_vec();
            wheels.push(wheel_of(
                package.dist,
                package.version,
                &requires,
                &package_files,
                package.entry_points().as_deref(),
            )?);
            let deps: Vec<String> = package
                .dependencies()
                .iter()
                .map(|d| {
                    let version = PACKAGES
                        .iter()
                        .find(|p| p.dist == *d)
                        .map_or("?", |p| p.version);
                    format!("\"{d} {version}\"")
                })
                .collect();
            let _ = writeln!(
                expected,
                "    \"{}\": (\"{}\", \"{}\", {py}, [{}]),",
                package.dist,
                package.module(),
                package.version,
                deps.join(", ")
            );
        }
        let wheel_bytes: usize = wheels.iter().map(|(_, b)| b.len()).sum();
        let requirements = requirements_of(
            PACKAGES
                .iter()
                .map(|p| format!("{}=={}", p.dist, p.version))
                .collect(),
        );
        let scripts: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| p.script)
            .map(|p| p.dist)
            .collect();
        let test = test_file(&expected, &scripts);
        let tests = PACKAGES.len() + scripts.len() + 1;
        let wheels: Vec<(&str, &[u8])> = wheels
            .iter()
            .map(|(f, b)| (f.as_str(), b.as_slice()))
            .collect();
        let (uv, pip) = write_projects(root, &requirements, &test, &wheels)?;
        Ok(Self {
            uv,
            pip,
            packages: PACKAGES.len(),
            tests,
            checks: "every package at its pinned version in /workspace/deps, every module \
                     imported, both console scripts run, the data file read",
            shape: format!(
                "{} wheels of {} KB in all ({} KB to {} KB each), {files} files and {} KB \
                 installed, {modules} Python modules in {} packages and sub-packages, {} \
                 dependencies between them, {} console scripts, a {} KB data file",
                wheels.len(),
                wheel_bytes / 1024,
                wheels.iter().map(|(_, b)| b.len()).min().unwrap_or(0) / 1024,
                wheels.iter().map(|(_, b)| b.len()).max().unwrap_or(0) / 1024,
                bytes / 1024,
                PACKAGES.len() + PACKAGES.iter().map(|p| p.subpackages).sum::<usize>(),
                PACKAGES.iter().map(|p| p.requires.len()).sum::<usize>(),
                scripts.len(),
                data_bytes / 1024
            ),
        })
    }
}

/// `requirements.txt` of scenario 10: `pins` (`NAME==VERSION`), sorted, from the project's
/// `wheels` folder only.
fn requirements_of(mut pins: Vec<String>) -> String {
    pins.sort();
    format!(
        "# ci-bench scenario 10: a dozen pinned packages from local wheels\n\
         --no-index\n--find-links wheels\n{}\n",
        pins.join("\n")
    )
}

/// The two projects, the same files but for `installer` under `[tool.ci]`: (uv's, pip's).
fn write_projects(
    root: &Path,
    requirements: &str,
    test: &str,
    wheels: &[(&str, &[u8])],
) -> Result<(PathBuf, PathBuf)> {
    let project = |name: &str, installer: &str| -> Result<PathBuf> {
        let dir = root.join(name);
        write(
            &dir.join("pyproject.toml"),
            format!("[tool.ci]\ninstaller = \"{installer}\"\n").as_bytes(),
        )?;
        write(&dir.join("requirements.txt"), requirements.as_bytes())?;
        write(&dir.join("test_installed.py"), test.as_bytes())?;
        for (file, bytes) in wheels {
            write(&dir.join("wheels").join(file), bytes)?;
        }
        Ok(dir)
    };
    Ok((
        project("installer-uv", "uv")?,
        project("installer-pip", "pip")?,
    ))
}

/// One downloaded wheel, read back: its distribution, what it installs and imports.
#[derive(Debug, PartialEq)]
struct WheelInfo {
    /// `Name` and `Version` of its METADATA.
    name: String,
    version: String,
    /// Its top-level modules and packages (from its RECORD), to import.
    modules: Vec<String>,
    /// Its `[console_scripts]` (from its entry_points.txt).
    scripts: Vec<String>,
    /// The files it installs (its RECORD's entries).
    files: usize,
}

/// Reads a wheel's METADATA, RECORD and entry_points.txt (the wheel format, PEP 427 and the
/// packaging specifications: <https://packaging.python.org/en/latest/specifications/>).
fn read_wheel(bytes: &[u8]) -> Result<WheelInfo> {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("not a zip")?;
    let mut text = |suffix: &str| -> Result<Option<String>> {
        let Some(name) = zip
            .file_names()
            .find(|n| {
                n.split_once('/')
                    .is_some_and(|(d, f)| d.ends_with(".dist-info") && f == suffix)
            })
            .map(str::to_owned)
        else {
            return Ok(None);
        };
        let mut out = String::new();
        zip.by_name(&name)?.read_to_string(&mut out)?;
        Ok(Some(out))
    };
    let metadata = text("METADATA")?.context("no .dist-info/METADATA")?;
    let record = text("RECORD")?.context("no .dist-info/RECORD")?;
    let entry_points = text("entry_points.txt")?.unwrap_or_default();
    let header = |key: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let paths: Vec<&str> = record
        .lines()
        .filter_map(|l| l.split(',').next())
        .filter(|p| !p.is_empty())
        .collect();
    let mut modules: Vec<String> = paths
        .iter()
        .filter_map(|p| match p.split_once('/') {
            Some((dir, _)) if !dir.ends_with(".dist-info") && !dir.ends_with(".data") => {
                Some(dir.to_owned())
            }
            Some(_) => None,
            None => p.strip_suffix(".py").map(str::to_owned),
        })
        .collect();
    modules.sort();
    modules.dedup();
    let mut section = "";
    let mut scripts = Vec::new();
    for line in entry_points.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if section == "console_scripts" {
            if let Some((script, _)) = line.split_once('=') {
                scripts.push(script.trim().to_owned());
            }
        }
    }
    Ok(WheelInfo {
        name: header("Name:").context("no Name in METADATA")?,
        version: header("Version:").context("no Version in METADATA")?,
        modules,
        scripts,
        files: paths.len(),
    })
}

impl Projects {
    /// The projects of the wheels in `dir` (`scripts/fetch-bench-wheels.sh`: the dozen real
    /// packages of `tests/bench/installer-dozen.txt`), every one pinned.
    fn from_wheels(root: &Path, dir: &Path) -> Result<Self> {
        let mut wheels = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the wheels in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "whl"))
            .collect();
        entries.sort();
        for path in &entries {
            let bytes = std::fs::read(path)?;
            let info = read_wheel(&bytes).with_context(|| format!("{}", path.display()))?;
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            wheels.push((file, bytes, info));
        }
        if wheels.is_empty() {
            bail!(
                "no wheels in {}: run scripts/fetch-bench-wheels.sh",
                dir.display()
            );
        }
        let mut pins: Vec<String> = wheels
            .iter()
            .map(|(_, _, i)| format!("{}=={}", i.name, i.version))
            .collect();
        pins.sort();
        let requirements = requirements_of(pins.clone());
        let mut packages = String::new();
        let mut scripts = Vec::new();
        for (_, _, info) in &wheels {
            let modules: Vec<String> = info.modules.iter().map(|m| format!("\"{m}\"")).collect();
            let _ = writeln!(
                packages,
                "    \"{}\": (\"{}\", [{}]),",
                info.name,
                info.version,
                modules.join(", ")
            );
            scripts.extend(info.scripts.iter().map(|s| format!("\"{s}\"")));
        }
        scripts.sort();
        let test = format!(
            r##"import importlib
import importlib.metadata
import os

import pytest

DEPS = "/workspace/deps/"

# distribution: (version, top-level modules)
PACKAGES = {{
{packages}}}
SCRIPTS = [{}]


@pytest.mark.parametrize("dist", sorted(PACKAGES))
def test_installed_and_its_modules_import(dist):
    version, modules = PACKAGES[dist]
    assert importlib.metadata.version(dist) == version
    for name in modules:
        module = importlib.import_module(name)
        assert module.__file__.startswith(DEPS), module.__file__


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script(script):
    path = os.path.join(DEPS, "bin", script)
    assert os.access(path, os.X_OK), path
    with open(path) as f:
        assert f.readline().startswith("#!" + DEPS + "bin/python"), path
"##,
            scripts.join(", ")
        );
        let tests = wheels.len() + scripts.len();
        let files: usize = wheels.iter().map(|(_, _, i)| i.files).sum();
        let wheel_bytes: usize = wheels.iter().map(|(_, b, _)| b.len()).sum();
        let shape = format!(
            "{} real wheels from PyPI ({}; `tests/bench/installer-dozen.txt`, fetched once by \
             `scripts/fetch-bench-wheels.sh`), {} KB in all, {files} files installed, {} \
             console scripts",
            wheels.len(),
            pins.join(", "),
            wheel_bytes / 1024,
            scripts.len()
        );
        let files: Vec<(&str, &[u8])> = wheels
            .iter()
            .map(|(f, b, _)| (f.as_str(), b.as_slice()))
            .collect();
        let (uv, pip) = write_projects(root, &requirements, &test, &files)?;
        Ok(Self {
            uv,
            pip,
            packages: wheels.len(),
            tests,
            shape,
            checks: "every package at its pinned version, its top-level modules imported from \
                     /workspace/deps, every console script installed there with the venv's \
                     Python",
        })
    }
}

/// The project's test: every package at its version, installed in /workspace/deps, every module
/// importable, its dependencies' answers; both console scripts; the data file.
fn test_file(expected: &str, scripts: &[&str]) -> String {
    let scripts: String = scripts.iter().map(|s| format!("\"{s}\", ")).collect();
    format!(
        r#"import importlib
import importlib.metadata
import pkgutil
import shutil
import subprocess

import pytest

DEPS = "/workspace/deps/"

# distribution: (package, version, Python modules, its dependencies' describe())
PACKAGES = {{
{expected}}}


@pytest.mark.parametrize("dist", sorted(PACKAGES))
def test_installed_and_every_module_imports(dist):
    name, version, modules, dependencies = PACKAGES[dist]
    assert importlib.metadata.version(dist) == version
    package = importlib.import_module(name)
    assert package.__file__.startswith(DEPS), package.__file__
    found = [m.name for m in pkgutil.walk_packages(package.__path__, name + ".")]
    for module in found:
        importlib.import_module(module)
    assert len(found) + 1 == modules
    assert package.describe() == f"{{dist}} {{version}}"
    assert package.dependencies() == dependencies


@pytest.mark.parametrize("script", [{scripts}])
def test_console_script(script):
    path = shutil.which(script)
    assert path is not None and path.startswith(DEPS), path
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"{{script}} {{importlib.metadata.version(script)}}\n"


def test_package_data():
    import benchinst_data

    rows = benchinst_data.table()
    assert len(rows) == {TABLE_ROWS} and rows[-1]["id"] == {last}
"#,
        last = TABLE_ROWS - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uv_summary_lines_give_their_time() {
        assert_eq!(
            uv_phase("Resolved 12 packages in 6ms", "Resolved"),
            Some(6.0)
        );
        assert_eq!(
            uv_phase("Installed 12 packages in 1.25s", "Installed"),
            Some(1250.0)
        );
        assert_eq!(uv_phase(" + benchinst-core==2.4.1", "Installed"), None);
    }

    #[test]
    fn bare_runs_are_parsed() {
        let own =
            parse_own("ci-bench-times venv=51000000 install=250500000\nci-bench-installed 12\n")
                .unwrap();
        assert_eq!(
            (own.venv_ms, own.install_ms, own.installed),
            (51.0, 250.5, 12)
        );
        assert!(parse_own("ci-bench-installed 12\n").is_none());
    }

    #[test]
    fn a_wheel_is_read_back() {
        let files = [
            ("demo/__init__.py".to_owned(), "X = 1\n".to_owned()),
            ("demo/cli.py".to_owned(), "def main(): pass\n".to_owned()),
            ("_demo_plugin.py".to_owned(), "\n".to_owned()),
        ];
        let entry_points =
            "[console_scripts]\ndemo = demo.cli:main\n\n[pytest11]\ndemo = _demo_plugin\n";
        let (_, bytes) =
            wheel_of("demo-kit", "1.2.post3", &[], &files, Some(entry_points)).unwrap();
        let info = read_wheel(&bytes).unwrap();
        assert_eq!(
            info,
            WheelInfo {
                name: "demo-kit".into(),
                version: "1.2.post3".into(),
                modules: vec!["_demo_plugin".into(), "demo".into()],
                scripts: vec!["demo".into()],
                // The three files, METADATA, WHEEL, entry_points.txt, top_level.txt, RECORD.
                files: 8,
            }
        );
        assert!(read_wheel(b"not a zip").is_err());
    }

    #[test]
    fn the_packages_are_the_same_every_run_and_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let a = Projects::create(&dir.path().join("a")).unwrap();
        let b = Projects::create(&dir.path().join("b")).unwrap();
        assert_eq!(a.shape, b.shape);
        let requirements = std::fs::read_to_string(a.uv.join("requirements.txt")).unwrap();
        assert_eq!(
            requirements.lines().filter(|l| l.contains("==")).count(),
            12
        );
        let wheels = std::fs::read_dir(a.uv.join("wheels")).unwrap().count();
        assert_eq!(wheels, 12);
        for p in &PACKAGES {
            for d in p.dependencies() {
                assert!(PACKAGES.iter().any(|q| q.dist == d), "{} needs {d}", p.dist);
            }
        }
    }
}
