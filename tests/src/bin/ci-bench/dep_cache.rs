//! Scenario 9, the dependency cache: the wall time of `ci submit test` for one project three
//! ways, run in interleaved rounds on one stack: (a) without requirements (its two small
//! packages are project files), (c) warm, with a `requirements.txt` that installs the same
//! packages from local wheels and whose install an earlier job of the same user cached (a hit:
//! no install step), and (b) cold, the same requirements with a comment line that changes each
//! run (a new key: a miss, the install runs). Target: warm / no requirements ≤ 1.15× per pair.
//! The logs must say hit or miss as expected and every job must pass, so the smoke test catches
//! a broken cache. Each job's phases (from its database rows and `docker events`) are noted, to
//! show where any difference goes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ci_tests::ci_common::db::{cache, events, jobs, steps, Db};
use ci_tests::ci_common::{EventKind, JobStatus, StepState, UserId};
use sha2::{Digest, Sha256};

use crate::scenarios::{timed, Ctx, Findings};
use crate::stack::{now_ns, DockerEvents, Stack};
use crate::stats::{percentile, Goal, Metric, Unit};

/// The warm/no-requirements target of the issue.
const WARM_TARGET: f64 = 1.15;

/// The three ways the project is submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// (a) no requirements: the packages are project files.
    Plain,
    /// (c) the requirements of an entry already cached: a hit.
    Warm,
    /// (b) requirements with a key never seen before: a miss.
    Cold,
}

impl Kind {
    fn letter(self) -> &'static str {
        match self {
            Kind::Plain => "a",
            Kind::Warm => "c",
            Kind::Cold => "b",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "no requirements",
            Kind::Warm => "warm",
            Kind::Cold => "cold",
        }
    }
}

/// One measured `ci submit test`, with what its job recorded.
struct Run {
    kind: Kind,
    /// Client process start, ns since the epoch (host clock, as the database's timestamps).
    start_ns: i128,
    wall_ms: f64,
    exited_ok: bool,
    tail: String,
    job: Option<JobRecord>,
}

/// What the database holds about a run's job.
struct JobRecord {
    id: String,
    status: JobStatus,
    created_ns: i128,
    claimed_ns: Option<i128>,
    finished_ns: Option<i128>,
    /// (name, state, started, finished) of each step.
    steps: Vec<(String, StepState, Option<i128>, Option<i128>)>,
    notices: Vec<String>,
}

impl JobRecord {
    fn step(&self, name: &str) -> Option<&(String, StepState, Option<i128>, Option<i128>)> {
        self.steps.iter().find(|s| s.0 == name)
    }

    fn says(&self, text: &str) -> bool {
        self.notices.iter().any(|n| n.contains(text))
    }
}

fn ns(t: chrono::DateTime<chrono::Utc>) -> i128 {
    t.timestamp_nanos_opt().unwrap_or(0) as i128
}

pub async fn run(ctx: &Ctx) -> Result<Findings> {
    let load_start = load_average();
    let mut stack = Stack::start(ctx.stack_options(1, &[])).await?;
    let user = stack.db.user("Bench").await;
    let docker_events =
        DockerEvents::start(stack.prefix(), now_ns().saturating_sub(1_000_000_000))?;
    let projects = Projects::create(&ctx.work)?;
    let url = stack.server(0).url.clone();
    let pool = stack.db.pool.clone();
    let timeout = ctx.job_timeout();
    let submit = |dir: PathBuf| {
        let mut cmd = tokio::process::Command::new(ci_tests::bin("ci"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CI_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["submit", "test"])
            .current_dir(&dir)
            .env("CI_SERVER_URL", &url)
            .env("CI_API_KEY", &user.key)
            .env("CI_CONFIG", dir.join("no-such-config"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("NO_COLOR", "1");
        cmd
    };
    let measure = |kind: Kind, dir: PathBuf, previous: Option<String>| {
        let cmd = submit(dir);
        let pool = pool.clone();
        let user_id = user.id;
        async move {
            let start_ns = now_ns() as i128;
            let (wall, exited_ok, tail) = timed(cmd, timeout).await?;
            let job = newest_job(&pool, user_id, previous.as_deref()).await?;
            anyhow::Ok(Run {
                kind,
                start_ns,
                wall_ms: wall.as_secs_f64() * 1000.0,
                exited_ok,
                tail,
                job,
            })
        }
    };

    // Unmeasured: one plain run warms Docker and the page cache; one run with the warm
    // requirements fills the entry the warm runs hit.
    let mut f = Findings::default();
    let mut last_job: Option<String> = None;
    let warmup = [
        (Kind::Plain, projects.plain.clone()),
        (Kind::Cold, projects.warm.clone()),
    ];
    for (kind, dir) in warmup {
        let run = measure(kind, dir, last_job.clone()).await?;
        last_job = run.job.as_ref().map(|j| j.id.clone());
        if !run.exited_ok {
            bail!(
                "warm-up `ci submit test` ({}) failed:\n{}",
                kind.label(),
                run.tail
            );
        }
        if kind == Kind::Cold {
            let filled = run
                .job
                .as_ref()
                .is_some_and(|j| j.says("dependency cache miss") && j.says("kept the installed"));
            f.check(
                filled,
                "warm-up: the first job with the requirements says \"dependency cache miss\" and \
                 kept its packages",
            );
        }
    }

    let n = ctx.sizes.dep_runs;
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..n {
        // a and c alternate which goes first; b (the slowest) ends the round, so each of a and
        // c follows a cold install half of the time.
        let order = if round % 2 == 0 {
            [Kind::Plain, Kind::Warm, Kind::Cold]
        } else {
            [Kind::Warm, Kind::Plain, Kind::Cold]
        };
        for kind in order {
            let dir = match kind {
                Kind::Plain => projects.plain.clone(),
                Kind::Warm => projects.warm.clone(),
                Kind::Cold => projects.cold(round)?,
            };
            let run = measure(kind, dir, last_job.clone()).await?;
            last_job = run.job.as_ref().map(|j| j.id.clone()).or(last_job);
            if !run.exited_ok {
                f.notes.push(format!(
                    "round {}: `ci submit test` ({}) failed:\n{}",
                    round + 1,
                    kind.label(),
                    run.tail
                ));
            }
            runs.push(run);
        }
        stack.ensure_alive()?;
    }
    let of = |kind: Kind| runs.iter().filter(move |r| r.kind == kind);

    // Correctness: every job passed; the logs say hit, miss, or nothing about the cache.
    for kind in [Kind::Plain, Kind::Warm, Kind::Cold] {
        let passed = of(kind)
            .filter(|r| {
                r.exited_ok
                    && r.job
                        .as_ref()
                        .is_some_and(|j| j.status == JobStatus::Passed)
            })
            .count();
        f.check(
            passed == n,
            format!(
                "{}: {passed}/{n} `ci submit test` exited 0, job passed",
                kind.label()
            ),
        );
    }
    let count = |kind: Kind, ok: &dyn Fn(&JobRecord) -> bool| {
        of(kind).filter(|r| r.job.as_ref().is_some_and(ok)).count()
    };
    let plain_quiet = count(Kind::Plain, &|j| {
        !j.says("dependency cache") && j.step("install").is_none()
    });
    f.check(
        plain_quiet == n,
        format!("no requirements: {plain_quiet}/{n} jobs had no install step and no cache notice"),
    );
    let hits = count(Kind::Warm, &|j| {
        j.says("dependency cache hit")
            && !j.says("dependency cache miss")
            && j.step("install").is_none()
    });
    f.check(
        hits == n,
        format!("warm: {hits}/{n} logs say \"dependency cache hit\", and no install step ran"),
    );
    let misses = count(Kind::Cold, &|j| {
        j.says("dependency cache miss")
            && !j.says("dependency cache hit")
            && j.says("kept the installed packages")
            && j.step("install").is_some_and(|s| s.1 == StepState::Passed)
    });
    f.check(
        misses == n,
        format!(
            "cold: {misses}/{n} logs say \"dependency cache miss\", the install step passed and \
             its packages were kept"
        ),
    );
    let entries = cache::list(&pool, Some(user.id)).await?;
    let warm_hits: i64 = entries.iter().map(|e| e.hits).max().unwrap_or(0);
    let ready = entries
        .iter()
        .filter(|e| e.state == cache::CacheState::Ready)
        .count();
    f.check(
        warm_hits == n as i64 && ready == n + 1,
        format!(
            "cache: {ready} entries ready (expected {}: the warm one and one per cold run), the \
             warm one hit {warm_hits} times (expected {n})",
            n + 1
        ),
    );

    // Figures.
    let wall = |kind: Kind| of(kind).map(|r| r.wall_ms).collect::<Vec<f64>>();
    let rounds: Vec<HashMap<Kind, f64>> = runs
        .chunks(3)
        .map(|round| round.iter().map(|r| (r.kind, r.wall_ms)).collect())
        .collect();
    let ratio = |over: Kind| {
        rounds
            .iter()
            .filter_map(|r| Some(r.get(&over)? / r.get(&Kind::Plain)?))
            .collect::<Vec<f64>>()
    };
    f.metrics.push(Metric::new(
        "(a) no requirements: `ci submit test` wall time",
        Unit::Ms,
        Goal::None,
        wall(Kind::Plain),
    ));
    f.metrics.push(Metric::new(
        "(c) warm cache (hit, no install step): wall time",
        Unit::Ms,
        Goal::None,
        wall(Kind::Warm),
    ));
    f.metrics.push(Metric::new(
        "(b) cold cache (miss, install step runs): wall time",
        Unit::Ms,
        Goal::None,
        wall(Kind::Cold),
    ));
    f.metrics.push(Metric::new(
        "warm / no requirements (per interleaved pair)",
        Unit::Ratio,
        Goal::AtMost(WARM_TARGET),
        ratio(Kind::Warm),
    ));
    f.metrics.push(Metric::new(
        "cold / no requirements (same round)",
        Unit::Ratio,
        Goal::None,
        ratio(Kind::Cold),
    ));

    // Each round, and the ratio by which of a and c ran first (the other follows it; the first
    // follows the previous round's cold install).
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.2}×", percentile(&v, 50.0))
        }
    };
    let by_first = |first: Kind| {
        runs.chunks(3)
            .filter(|round| round[0].kind == first)
            .filter_map(|round| {
                let wall = |k: Kind| round.iter().find(|r| r.kind == k).map(|r| r.wall_ms);
                Some(wall(Kind::Warm)? / wall(Kind::Plain)?)
            })
            .collect::<Vec<f64>>()
    };
    let listing: Vec<String> = runs
        .chunks(3)
        .map(|round| {
            round
                .iter()
                .map(|r| format!("{} {:.0}", r.kind.letter(), r.wall_ms))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    f.notes.push(format!(
        "wall times per round in run order, ms (a = no requirements, c = warm, b = cold): {}. \
         Median warm / no requirements when (a) ran first: {}; when (c) ran first: {} (the \
         first of a round runs right after a cold install job, the previous round's or the \
         warm-up's: the alternation is there so that this costs a and c alike)",
        listing.join(" | "),
        median(by_first(Kind::Plain)),
        median(by_first(Kind::Warm)),
    ));

    // Where the time goes: medians of each phase, per kind.
    let creates = docker_events.first("create");
    for kind in [Kind::Plain, Kind::Warm, Kind::Cold] {
        f.notes.push(phases(kind, of(kind), &creates));
    }
    f.notes.push(warm_minus_plain(&runs, &creates));
    f.notes.push(format!(
        "{n} rounds on one stack, each running (a) and (c) in alternating order, then (b); one \
         unmeasured (a) and one unmeasured run with the warm requirements (which fills the entry) \
         first. The project: one test file importing two tiny packages; (a) ships them as project \
         folders, (b) and (c) install them with `requirements.txt` (`--no-index --find-links \
         wheels`, two local wheels, one requiring the other)."
    ));
    f.notes.push(load_note(
        load_start,
        "; compare the per-pair ratios, not runs taken apart",
    ));
    Ok(f)
}

/// "1-minute load average A before the scenario and B after, on N cores", and whether the
/// machine was shared then (more runnable tasks than cores at either end).
pub(crate) fn load_summary(start: Option<f64>, end: Option<f64>) -> (String, bool) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shared = [start, end].iter().flatten().any(|l| *l > cores as f64);
    let text = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    let summary = format!(
        "1-minute load average {} before the scenario and {} after, on {cores} cores",
        text(start),
        text(end)
    );
    (summary, shared)
}

/// The note on the machine's load for a scenario that started at `start` (see
/// [`load_summary`]), read now; when the machine was shared it says the samples are noisy and
/// adds `advice` (such as "; compare the per-pair ratios").
pub(crate) fn load_note(start: Option<f64>, advice: &str) -> String {
    let (load, shared) = load_summary(start, load_average());
    if shared {
        format!(
            "{load}: the machine was shared (other work kept more runnable tasks than cores), \
             so single samples are noisy{advice}"
        )
    } else {
        load
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The user's newest job, if it is not `previous` (the client may have failed before submitting).
async fn newest_job(pool: &Db, user: UserId, previous: Option<&str>) -> Result<Option<JobRecord>> {
    let Some(job) = jobs::list_for_user(pool, user, 1, None).await?.pop() else {
        return Ok(None);
    };
    if previous == Some(job.id.to_string().as_str()) {
        return Ok(None);
    }
    let steps = steps::list(pool, job.id)
        .await?
        .into_iter()
        .map(|s| (s.name, s.state, s.started_at.map(ns), s.finished_at.map(ns)))
        .collect();
    let notices = events::list_after(pool, job.id, 0, 100_000)
        .await?
        .into_iter()
        .filter(|e| e.kind == EventKind::Notice)
        .map(|e| e.text)
        .collect();
    Ok(Some(JobRecord {
        id: job.id.to_string(),
        status: job.status,
        created_ns: ns(job.created_at),
        claimed_ns: job.started_at.map(ns),
        finished_ns: job.finished_at.map(ns),
        steps,
        notices,
    }))
}

/// The phases of a run, in order; together they make its wall time. The install step is part
/// of "first container created → test step started" (and 0 without one).
const PHASES: [&str; 8] = [
    "client start → job created (zip, upload)",
    "created → claimed",
    "claimed → first container created",
    "first container created → test step started",
    "of which the install step",
    "test step started → ended",
    "test step ended → job finished",
    "job finished → client exited",
];

/// How long each of [`PHASES`] took in `run`, in ms (from the job's database timestamps and the
/// first container `create` in `docker events`: the same host clock as the client's start).
fn spans(run: &Run, creates: &HashMap<String, u64>) -> [Option<f64>; 8] {
    let Some(job) = &run.job else {
        return [None; 8];
    };
    let created = creates.get(&job.id).map(|t| *t as i128);
    let test = job.step("test");
    let (test_start, test_end) = (test.and_then(|s| s.2), test.and_then(|s| s.3));
    let install = job
        .step("install")
        .and_then(|s| Some(s.3? - s.2?))
        .or(Some(0));
    let end_ns = run.start_ns + (run.wall_ms * 1e6) as i128;
    [
        Some(job.created_ns - run.start_ns),
        job.claimed_ns.map(|c| c - job.created_ns),
        job.claimed_ns.zip(created).map(|(c, k)| k - c),
        created.zip(test_start).map(|(k, s)| s - k),
        install,
        test_start.zip(test_end).map(|(s, e)| e - s),
        test_end.zip(job.finished_ns).map(|(e, f)| f - e),
        job.finished_ns.map(|f| end_ns - f),
    ]
    .map(|span| span.map(|ns| ns as f64 / 1e6))
}

/// `name value; name value; ...` with the median of each phase's samples (`signed`: with a sign).
fn medians(columns: Vec<Vec<f64>>, with_install: bool, signed: bool) -> String {
    PHASES
        .iter()
        .zip(columns)
        .filter(|(name, _)| with_install || !name.contains("install"))
        .map(|(name, mut samples)| {
            samples.sort_by(f64::total_cmp);
            match (samples.is_empty(), signed) {
                (true, _) => format!("{name} —"),
                (false, true) => format!("{name} {:+.0}", percentile(&samples, 50.0)),
                (false, false) => format!("{name} {:.0}", percentile(&samples, 50.0)),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One note: the median of each phase of `kind`'s runs, in ms.
fn phases<'a>(
    kind: Kind,
    runs: impl Iterator<Item = &'a Run>,
    creates: &HashMap<String, u64>,
) -> String {
    let mut columns = vec![Vec::new(); PHASES.len()];
    for run in runs {
        for (samples, span) in columns.iter_mut().zip(spans(run, creates)) {
            samples.extend(span);
        }
    }
    format!(
        "{}: phase medians in ms (database timestamps and `docker events`, same host clock): {}",
        kind.label(),
        medians(columns, kind == Kind::Cold, false)
    )
}

/// One note: warm minus no requirements, per round and phase (median over the rounds, in ms).
fn warm_minus_plain(runs: &[Run], creates: &HashMap<String, u64>) -> String {
    let mut columns = vec![Vec::new(); PHASES.len()];
    let mut wall = Vec::new();
    for round in runs.chunks(3) {
        let find = |kind: Kind| round.iter().find(|r| r.kind == kind);
        let (Some(warm), Some(plain)) = (find(Kind::Warm), find(Kind::Plain)) else {
            continue;
        };
        wall.push(warm.wall_ms - plain.wall_ms);
        let pairs = spans(warm, creates).into_iter().zip(spans(plain, creates));
        for (samples, pair) in columns.iter_mut().zip(pairs) {
            if let (Some(w), Some(p)) = pair {
                samples.push(w - p);
            }
        }
    }
    wall.sort_by(f64::total_cmp);
    let wall = if wall.is_empty() {
        "—".to_owned()
    } else {
        format!("{:+.0}", percentile(&wall, 50.0))
    };
    format!(
        "warm − no requirements, per round, median in ms: wall time {wall}; {}",
        medians(columns, false, true)
    )
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The project's test: the same file in every variant.
const TEST: &str = r#"import benchdep_core
import benchdep_text


def test_the_dependency_works():
    assert benchdep_text.shout("warm cache") == "WARM CACHE!"


def test_its_own_dependency_is_there():
    assert benchdep_core.VERSION == "1.0.0"
    assert benchdep_core.words("a b c") == ["a", "b", "c"]
"#;

const CORE: &str = r#""""ci-bench's dependency cache fixture: the base package."""

VERSION = "1.0.0"


def words(text):
    return text.split()
"#;

const TEXT: &str = r#""""ci-bench's dependency cache fixture: a package that needs benchdep-core."""

from benchdep_core import words


def shout(text):
    return " ".join(word.upper() for word in words(text)) + "!"
"#;

/// What `requirements.txt` says after its first (comment) line.
const REQUIREMENTS: &str = "--no-index\n--find-links wheels\nbenchdep-text==1.0.0\n";

/// The generated project folders.
struct Projects {
    plain: PathBuf,
    warm: PathBuf,
    cold: PathBuf,
}

impl Projects {
    fn create(root: &Path) -> Result<Self> {
        let plain = root.join("dep-cache-plain");
        write(&plain.join("test_deps.py"), TEST.as_bytes())?;
        write(&plain.join("benchdep_core/__init__.py"), CORE.as_bytes())?;
        write(&plain.join("benchdep_text/__init__.py"), TEXT.as_bytes())?;

        let core = wheel("benchdep_core", "benchdep-core", &[], CORE)?;
        let text = wheel(
            "benchdep_text",
            "benchdep-text",
            &["benchdep-core==1.0.0"],
            TEXT,
        )?;
        let with_requirements = |name: &str, comment: &str| -> Result<PathBuf> {
            let dir = root.join(name);
            write(&dir.join("test_deps.py"), TEST.as_bytes())?;
            write(&dir.join("wheels").join(&core.0), &core.1)?;
            write(&dir.join("wheels").join(&text.0), &text.1)?;
            write(
                &dir.join("requirements.txt"),
                format!("{comment}\n{REQUIREMENTS}").as_bytes(),
            )?;
            Ok(dir)
        };
        Ok(Self {
            plain,
            warm: with_requirements("dep-cache-warm", "# ci-bench: the warm key")?,
            cold: with_requirements("dep-cache-cold", "# ci-bench: cold run 0")?,
        })
    }

    /// The cold project, with a `requirements.txt` no earlier job had (a new cache key).
    fn cold(&self, round: usize) -> Result<PathBuf> {
        write(
            &self.cold.join("requirements.txt"),
            format!("# ci-bench: cold run {}\n{REQUIREMENTS}", round + 1).as_bytes(),
        )?;
        Ok(self.cold.clone())
    }
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// A pure-Python wheel of one package (`module/__init__.py` = `code`), version 1.0.0: its file
/// name and bytes.
fn wheel(module: &str, dist: &str, requires: &[&str], code: &str) -> Result<(String, Vec<u8>)> {
    wheel_of(
        dist,
        "1.0.0",
        requires,
        &[(format!("{module}/__init__.py"), code.to_owned())],
        None,
    )
}

/// A pure-Python (`py3-none-any`) wheel of distribution `dist` at `version`: its file name and
/// bytes. `files` are (path, text) pairs in the wheel's root (packages and their data), then come
/// the `.dist-info` files: `METADATA` (with a `Requires-Dist` per `requires`), `WHEEL`,
/// `entry_points.txt` when there is one (`[console_scripts]` ...), `top_level.txt` (the first
/// components of `files`' paths) and `RECORD`. Entries carry a fixed date, so the same input
/// gives the same bytes.
pub(crate) fn wheel_of(
    dist: &str,
    version: &str,
    requires: &[&str],
    files: &[(String, String)],
    entry_points: Option<&str>,
) -> Result<(String, Vec<u8>)> {
    let stem = dist.replace('-', "_");
    let info = format!("{stem}-{version}.dist-info");
    let mut metadata = format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n");
    for r in requires {
        metadata.push_str(&format!("Requires-Dist: {r}\n"));
    }
    let mut top_level: Vec<&str> = files
        .iter()
        .filter_map(|(path, _)| path.split('/').next())
        .map(|first| first.strip_suffix(".py").unwrap_or(first))
        .collect();
    top_level.sort_unstable();
    top_level.dedup();
    let mut files = files.to_vec();
    files.push((format!("{info}/METADATA"), metadata));
    files.push((
        format!("{info}/WHEEL"),
        "Wheel-Version: 1.0\nGenerator: ci-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_owned(),
    ));
    if let Some(entry_points) = entry_points {
        files.push((format!("{info}/entry_points.txt"), entry_points.to_owned()));
    }
    files.push((
        format!("{info}/top_level.txt"),
        top_level.iter().map(|t| format!("{t}\n")).collect(),
    ));
    let mut record = String::new();
    for (path, text) in &files {
        let digest = Sha256::digest(text.as_bytes());
        record.push_str(&format!(
            "{path},sha256={},{}\n",
            base64_url(&digest),
            text.len()
        ));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record));

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (path, text) in &files {
        zip.start_file(path.as_str(), options)?;
        zip.write_all(text.as_bytes())?;
    }
    let bytes = zip.finish()?.into_inner();
    Ok((format!("{stem}-{version}-py3-none-any.whl"), bytes))
}

/// URL-safe base64 without padding, as wheel `RECORD` files write hashes.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_hashes_are_url_safe_base64_without_padding() {
        assert_eq!(
            base64_url(&Sha256::digest(b"")),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
    }

    #[test]
    fn wheels_are_reproducible_and_list_every_file() {
        let (name, bytes) = wheel("pkg", "pkg", &["other==1"], "X = 1\n").unwrap();
        assert_eq!(name, "pkg-1.0.0-py3-none-any.whl");
        assert_eq!(
            bytes,
            wheel("pkg", "pkg", &["other==1"], "X = 1\n").unwrap().1
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut record = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("pkg-1.0.0.dist-info/RECORD").unwrap(),
            &mut record,
        )
        .unwrap();
        assert_eq!(record.lines().count(), archive.len());
        assert!(record.contains("pkg/__init__.py,sha256="));
    }
}
