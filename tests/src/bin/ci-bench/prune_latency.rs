//! Scenario 12: log latency during a prune. The database is filled with old, ended jobs holding
//! about a million log events (each job with test results and a report blob too, written through
//! `ci_common::testing::history`), then a running job's per-line log latency (as in scenario 3)
//! is measured while nothing else happens and while the real `ci-admin prune --older-than 30d`
//! deletes those jobs from the same database. Retention deletes in small batches so that a
//! running job's log does not wait behind it: the target is a p99 during the prune under twice
//! the idle p99.
//!
//! On SQLite it also measures what happens to the freed pages: the database's size after the
//! fill, its free pages after the prune, and how much it grows when as many jobs are written
//! again (the free pages are reused first).
//!
//! Between the fill and the measurement the database settles (`history::settle`: a vacuum and
//! checkpoint on PostgreSQL, a WAL checkpoint on SQLite), so that the idle figure is not taken
//! while the backend is still writing the fill back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ci_tests::ci_common::db::retention::{self, Space};
use ci_tests::ci_common::testing::history::{self, EndedJobs};
use ci_tests::DbArg as _;

use crate::client::follow;
use crate::fixtures;
use crate::scenarios::{Ctx, Findings};
use crate::stack::{now_ns, Stack};
use crate::stats::{percentile, Goal, Metric, Unit};

/// Test results of each old job.
const RESULTS_PER_JOB: usize = 100;
/// Size of each old job's report blob.
const BLOB_BYTES: usize = 8 * 1024;
/// How long the job keeps printing after the prune ended before it is cancelled.
const AFTER: Duration = Duration::from_millis(300);

/// One line of the running job: its index, when it was printed and when it arrived (ns).
#[derive(Clone, Copy)]
struct Line {
    index: usize,
    printed: i128,
    arrived: u64,
}

/// What one run measured.
struct Run {
    lines: Vec<Line>,
    prune_start: u64,
    prune_end: u64,
    /// `ci-admin prune --json`'s answer.
    pruned: serde_json::Value,
    /// The stream ended with `complete` (cancelled), without seq gaps.
    complete_status: Option<String>,
    id_gaps: u64,
}

pub async fn run(ctx: &Ctx) -> Result<Findings> {
    let s = &ctx.sizes;
    let interval = s.latency_interval_ms;
    // Enough lines to outlast any prune: the job is cancelled once the prune is over.
    let lines = (ctx.job_timeout().as_millis() as u64 / interval.max(1)) as usize;
    let zip = fixtures::latency_named(&ctx.work, "prune-latency", lines, interval)?.zip();
    let events = s.prune_jobs * s.prune_events_per_job;
    let mut f = Findings::default();
    let load_start = crate::dep_cache::load_average();
    let (mut idle, mut during) = (Vec::new(), Vec::new());
    let (mut p99_ratio, mut median_ratio) = (Vec::new(), Vec::new());
    let (mut prune_secs, mut during_lines, mut pruned_events) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut fill_secs = Vec::new();
    let (mut filled_mb, mut free_mb, mut growth_mb) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..s.prune_runs {
        let tag = format!("run {}", run + 1);
        let mut stack = Stack::start(ctx.stack_options(1, &[])).await?;
        let user = stack.db.user("Bench").await;
        let owner = stack.db.user("History").await;
        let spec = EndedJobs {
            jobs: s.prune_jobs,
            events_per_job: s.prune_events_per_job,
            results_per_job: RESULTS_PER_JOB,
            blob_bytes: BLOB_BYTES,
            finished_at: chrono::Utc::now() - chrono::Duration::days(40),
        };
        let started = Instant::now();
        let old = history::ended_jobs(&stack.db.pool, owner.id, &spec)
            .await
            .map_err(|e| anyhow!("cannot fill the database: {e}"))?;
        fill_secs.push(started.elapsed().as_secs_f64());
        history::settle(&stack.db.pool)
            .await
            .map_err(|e| anyhow!("cannot settle the database after the fill: {e}"))?;
        let filled = retention::space(&stack.db.pool).await?;

        let measured = measure(ctx, &mut stack, &user.key, &zip).await?;
        stack.ensure_alive()?;

        // What the prune removed: exactly the old jobs.
        let gone: Vec<String> = measured.pruned["job_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let old_ids: Vec<String> = old.iter().map(ToString::to_string).collect();
        let removed_events = measured.pruned["events"].as_u64().unwrap_or(0);
        f.check(
            gone == old_ids && removed_events == events as u64,
            format!(
                "{tag}: the prune removed the {} old jobs with their {events} events, and nothing \
                 else ({} jobs, {removed_events} events)",
                old.len(),
                gone.len()
            ),
        );
        pruned_events.push(removed_events as f64);

        // The running job: every line in order, then the `complete` of its cancellation.
        let in_order = measured.lines.iter().enumerate().all(|(k, l)| l.index == k);
        f.check(
            in_order
                && measured.id_gaps == 0
                && measured.complete_status.as_deref() == Some("cancelled"),
            format!(
                "{tag}: the running job streamed {} lines in order, no seq gaps, until it was \
                 cancelled after the prune ({:?})",
                measured.lines.len(),
                measured.complete_status
            ),
        );
        let (start, end) = (
            i128::from(measured.prune_start),
            i128::from(measured.prune_end),
        );
        let latency = |l: &Line| (l.arrived as i128 - l.printed) as f64 / 1e6;
        let run_idle: Vec<f64> = measured
            .lines
            .iter()
            .filter(|l| l.printed < start)
            .map(latency)
            .collect();
        let run_during: Vec<f64> = measured
            .lines
            .iter()
            .filter(|l| l.printed >= start && l.printed <= end)
            .map(latency)
            .collect();
        let after = measured.lines.iter().filter(|l| l.printed > end).count();
        f.check(
            !run_idle.is_empty() && !run_during.is_empty() && after > 0,
            format!(
                "{tag}: the job printed before ({}), during ({}) and after ({after}) the prune",
                run_idle.len(),
                run_during.len()
            ),
        );
        let seconds = (end - start) as f64 / 1e9;
        prune_secs.push(seconds);
        during_lines.push(run_during.len() as f64);
        if let (Some(a), Some(b)) = (summary(&run_idle), summary(&run_during)) {
            p99_ratio.push(b.1 / a.1);
            median_ratio.push(b.0 / a.0);
            f.notes.push(format!(
                "{tag}: idle median {:.1} ms, p99 {:.1} ms ({} lines); during the prune ({seconds:.2} s, \
                 {} lines) median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                a.0,
                a.1,
                run_idle.len(),
                run_during.len(),
                b.0,
                b.1,
                run_during.iter().copied().fold(0.0, f64::max),
            ));
        }
        idle.extend(run_idle);
        during.extend(run_during);

        // SQLite: the freed pages are reused by the next rows before the file grows.
        if let Some(filled) = filled {
            let pruned = retention::space(&stack.db.pool).await?.unwrap_or_default();
            let again = EndedJobs {
                finished_at: chrono::Utc::now(),
                ..spec
            };
            history::ended_jobs(&stack.db.pool, owner.id, &again)
                .await
                .map_err(|e| anyhow!("cannot write the jobs again: {e}"))?;
            let refilled = retention::space(&stack.db.pool).await?.unwrap_or_default();
            filled_mb.push(mb(filled.bytes()));
            free_mb.push(mb(pruned.free_bytes()));
            growth_mb.push(mb(refilled.bytes()) - mb(pruned.bytes()));
            f.notes.push(format!(
                "{tag}: SQLite pages of {} bytes: {} after the fill; after the prune {} ({} free); \
                 after writing as many jobs again {} ({} free); files now: {}",
                filled.page_size,
                filled.pages,
                pruned.pages,
                pruned.free_pages,
                refilled.pages,
                refilled.free_pages,
                files(&stack)
            ));
            space_check(&mut f, &tag, &pruned, &refilled);
        }
    }
    f.metrics.push(Metric::new(
        format!("print → SSE arrival, idle (a line every {interval} ms)"),
        Unit::Ms,
        Goal::None,
        idle,
    ));
    f.metrics.push(Metric::new(
        format!("print → SSE arrival, during `ci-admin prune` (a line every {interval} ms)"),
        Unit::Ms,
        Goal::None,
        during,
    ));
    f.metrics.push(Metric::new(
        "p99 during the prune / p99 idle (per run)",
        Unit::Ratio,
        Goal::AtMost(2.0),
        p99_ratio,
    ));
    f.metrics.push(Metric::new(
        "median during the prune / median idle (per run)",
        Unit::Ratio,
        Goal::None,
        median_ratio,
    ));
    f.metrics.push(Metric::new(
        "`ci-admin prune --older-than 30d` wall time",
        Unit::Secs,
        Goal::None,
        prune_secs,
    ));
    f.metrics.push(Metric::new(
        "lines printed while the prune ran",
        Unit::Count,
        Goal::None,
        during_lines,
    ));
    f.metrics.push(Metric::new(
        "events pruned",
        Unit::Count,
        Goal::None,
        pruned_events,
    ));
    f.metrics.push(Metric::new(
        "writing the old jobs (before measuring)",
        Unit::Secs,
        Goal::None,
        fill_secs,
    ));
    if !filled_mb.is_empty() {
        f.metrics.push(Metric::new(
            "SQLite database after the fill",
            Unit::Mb,
            Goal::None,
            filled_mb,
        ));
        f.metrics.push(Metric::new(
            "free pages after the prune",
            Unit::Mb,
            Goal::None,
            free_mb,
        ));
        f.metrics.push(
            Metric::new(
                "growth of the database when as many jobs are written again",
                Unit::Mb,
                Goal::None,
                growth_mb,
            )
            .note("free pages reused first"),
        );
    }
    f.notes.push(format!(
        "{} old jobs per run, each with {} log lines of about 90 bytes, {RESULTS_PER_JOB} test \
         results and a report blob of {} KiB, ended 40 days ago; the running job prints a line \
         every {interval} ms; idle = its first {} lines (before the prune started), during = \
         lines printed between `ci-admin prune` starting and exiting",
        s.prune_jobs,
        s.prune_events_per_job,
        BLOB_BYTES / 1024,
        s.prune_idle_lines
    ));
    f.notes.push(crate::dep_cache::load_note(load_start, ""));
    Ok(f)
}

/// Runs the latency job as the user with `key`: `prune_idle_lines` lines idle, then
/// `ci-admin prune --older-than 30d --json` to its end, then a little more; then cancels it.
async fn measure(ctx: &Ctx, stack: &mut Stack, key: &str, zip: &[u8]) -> Result<Run> {
    let base = stack.server(0).url.clone();
    let job = crate::client::submit(&ctx.http, &base, key, zip.to_vec()).await?;
    let lines: Arc<Mutex<Vec<Line>>> = Arc::new(Mutex::new(Vec::new()));
    let follower = {
        let (http, base, key, id) = (
            ctx.http.clone(),
            base.clone(),
            key.to_owned(),
            job.job_id.clone(),
        );
        let lines = Arc::clone(&lines);
        let timeout = ctx.job_timeout();
        tokio::spawn(async move {
            follow(&http, &base, &key, &id, timeout, |text, arrived| {
                let mut parts = text.split(' ');
                if parts.next() != Some("lat") {
                    return;
                }
                let index: Option<usize> = parts.next().and_then(|v| v.parse().ok());
                let printed: Option<i128> = parts.next().and_then(|v| v.parse().ok());
                if let (Some(index), Some(printed)) = (index, printed) {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(Line {
                            index,
                            printed,
                            arrived,
                        });
                    }
                }
            })
            .await
        })
    };
    let count = || lines.lock().map(|l| l.len()).unwrap_or(0);
    let idle_lines = ctx.sizes.prune_idle_lines;
    wait_for(ctx.job_timeout(), &follower, || count() >= idle_lines)
        .await
        .context("waiting for the job's idle lines")?;

    let mut cmd = tokio::process::Command::new(ci_tests::bin("ci-admin"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CI_") {
            cmd.env_remove(name);
        }
    }
    cmd.args((&stack.db).db_args())
        .args(["prune", "--older-than", "30d", "--json"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let prune_start = now_ns();
    let output = tokio::time::timeout(ctx.job_timeout(), cmd.output())
        .await
        .context("ci-admin prune took too long")?
        .context("cannot run ci-admin prune")?;
    let prune_end = now_ns();
    if !output.status.success() {
        bail!(
            "ci-admin prune exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pruned: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("ci-admin prune --json's output")?;

    // The lines printed just before the prune ended arrive too; then the job is cancelled.
    let after = i128::from(prune_end) + AFTER.as_nanos() as i128;
    let printed_after = || {
        lines
            .lock()
            .map(|l| l.last().is_some_and(|l| l.printed > after))
            .unwrap_or(false)
    };
    wait_for(Duration::from_secs(60), &follower, printed_after)
        .await
        .context("waiting for the job's lines after the prune")?;
    let response = ctx
        .http
        .post(format!("{base}/api/v1/jobs/{}/cancel", job.job_id))
        .bearer_auth(key)
        .send()
        .await
        .context("POST cancel")?;
    if !response.status().is_success() {
        bail!("cancelling the job answered {}", response.status());
    }
    let followed = follower.await.context("follower task")??;
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Run {
        lines,
        prune_start,
        prune_end,
        pruned,
        complete_status: followed.complete_status,
        id_gaps: followed.id_gaps,
    })
}

/// Polls `done` every 10 ms until it holds; fails after `timeout` or when the follower ended.
async fn wait_for<T>(
    timeout: Duration,
    follower: &tokio::task::JoinHandle<T>,
    mut done: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if follower.is_finished() {
            bail!("the job's event stream ended early");
        }
        if Instant::now() >= deadline {
            bail!("not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// (median, p99) of `samples`.
fn summary(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((percentile(&sorted, 50.0), percentile(&sorted, 99.0)))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The sizes of the SQLite database's files.
fn files(stack: &Stack) -> String {
    let size = |suffix: &str| {
        let path = ci_tests::ci_common::db::sibling(&stack.db.path, suffix);
        std::fs::metadata(&path)
            .map(|m| format!("{:.1} MB", mb(m.len())))
            .unwrap_or_else(|_| "none".to_owned())
    };
    format!("ci.db {}, ci.db-wal {}", size(""), size("-wal"))
}

/// Records whether writing the pruned amount again used the free pages.
fn space_check(f: &mut Findings, tag: &str, pruned: &Space, refilled: &Space) {
    let grew = refilled.pages.saturating_sub(pruned.pages);
    f.check(
        refilled.free_pages < pruned.free_pages,
        format!(
            "{tag}: writing as many jobs again used the free pages ({} → {} free, the database \
             grew by {grew} pages)",
            pruned.free_pages, refilled.free_pages
        ),
    );
}
