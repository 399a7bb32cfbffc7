//! Scenario 13: a big log end to end. The real `ci submit test` of a project whose test prints
//! 150,000 lines (the flood fixture of scenario 4), from process start to exit, against the
//! floor of scenario 1 for the same project: a bare `docker run` of the runner image running
//! the same pytest. Both print every line on their stdout, which `ci-bench` reads through a
//! pipe as it comes, counting and hashing the lines; the pairs are interleaved and the ratio is
//! taken per pair.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::fixtures;
use crate::scenarios::{ci_submit_test, floor_pytest, Ctx, Findings};
use crate::stack::Stack;
use crate::stats::{Goal, Metric, Unit};
use crate::ui_paint::thousands;

/// Bytes of one flood line with its newline.
const LINE_BYTES: usize = 52;

/// What one run printed, as read through the pipe.
struct Streamed {
    /// From just before the process started to its exit (after the end of its output).
    elapsed: Duration,
    /// It exited 0.
    ok: bool,
    /// Its `flood ` lines on stdout, and the SHA-256 of them in order, each with a newline.
    lines: usize,
    sha: String,
    /// The last lines of the rest of its output (stdout without the flood lines, then stderr).
    tail: String,
}

/// Runs `cmd` with its stdout and stderr piped to this process, reading stdout line by line as
/// it comes, to its exit or `timeout`.
async fn streamed(mut cmd: tokio::process::Command, timeout: Duration) -> Result<Streamed> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let run = async {
        let mut reader = tokio::io::BufReader::with_capacity(1 << 16, stdout);
        let mut line = Vec::new();
        let mut hash = Sha256::new();
        let mut lines = 0;
        let mut rest: VecDeque<String> = VecDeque::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .await
                .context("reading stdout")?
                == 0
            {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.starts_with(b"flood ") {
                hash.update(text);
                hash.update(b"\n");
                lines += 1;
            } else {
                if rest.len() == 10 {
                    rest.pop_front();
                }
                rest.push_back(String::from_utf8_lossy(text).into_owned());
            }
        }
        let status = child.wait().await.context("waiting for the process")?;
        anyhow::Ok((status, lines, fixtures::hex(&hash.finalize()), rest))
    };
    let (status, lines, sha, rest) = tokio::time::timeout(timeout, run)
        .await
        .with_context(|| format!("{cmd:?} took longer than {timeout:?}"))??;
    let elapsed = start.elapsed();
    let errors = errors.await.unwrap_or_default();
    let errors = String::from_utf8_lossy(&errors);
    let mut tail: Vec<&str> = rest.iter().map(String::as_str).collect();
    let err_lines: Vec<&str> = errors.lines().collect();
    tail.extend(&err_lines[err_lines.len().saturating_sub(10)..]);
    Ok(Streamed {
        elapsed,
        ok: status.success(),
        lines,
        sha,
        tail: tail.join("\n"),
    })
}

pub async fn run(ctx: &Ctx) -> Result<Findings> {
    let lines = ctx.sizes.big_log_lines;
    let load_start = crate::dep_cache::load_average();
    let mut stack =
        Stack::start(ctx.stack_options(1, &["--log-cap-lines", "0", "--log-cap-bytes", "4g"]))
            .await?;
    let user = stack.db.user("Bench").await;
    // Two copies: the floor's pytest writes its bytecode into its folder, which ours would zip.
    let ours_dir = fixtures::flood_named(&ctx.work, "big-log-ours", lines)?;
    let floor_dir = fixtures::flood_named(&ctx.work, "big-log-floor", lines)?;
    let expected_sha = fixtures::flood_checksum(lines);
    let url = stack.server(0).url.clone();
    let timeout = ctx.job_timeout();
    let prefix = stack.prefix().to_owned();
    let ci = || ci_submit_test(&url, &user.key, &ours_dir.dir);
    let floor = || floor_pytest(ctx, &prefix, &floor_dir.dir);

    // One unmeasured pair warms Docker and the page cache.
    let warm = streamed(ci(), timeout).await?;
    if !warm.ok {
        bail!("warm-up `ci submit test` failed:\n{}", warm.tail);
    }
    let warm = streamed(floor(), timeout).await?;
    if !warm.ok {
        bail!("warm-up floor `docker run` failed:\n{}", warm.tail);
    }

    let mut f = Findings::default();
    let (mut ours, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_ok, mut floor_ok) = (0, 0);
    let (mut ours_all, mut floor_all) = (0, 0);
    let n = ctx.sizes.big_log_runs;
    let count = thousands(lines);
    for pair in 0..n {
        let tag = format!("pair {}", pair + 1);
        let a = streamed(ci(), timeout).await?;
        stack.ensure_alive()?;
        let b = streamed(floor(), timeout).await?;
        for (run, what, ok, all) in [
            (&a, "`ci submit test`", &mut ours_ok, &mut ours_all),
            (&b, "floor `docker run`", &mut floor_ok, &mut floor_all),
        ] {
            if run.ok {
                *ok += 1;
            } else {
                f.notes.push(format!("{tag}: {what} failed:\n{}", run.tail));
            }
            if run.lines == lines && run.sha == expected_sha {
                *all += 1;
            } else {
                f.notes.push(format!(
                    "{tag}: {what} printed {}/{count} lines, checksum {}",
                    thousands(run.lines),
                    if run.sha == expected_sha {
                        "matches"
                    } else {
                        "DIFFERS"
                    }
                ));
            }
        }
        let (a, b) = (a.elapsed.as_secs_f64(), b.elapsed.as_secs_f64());
        ours.push(a);
        floors.push(b);
        ratios.push(a / b);
    }
    f.check(
        ours_ok == n,
        format!("{ours_ok}/{n} `ci submit test` exited 0"),
    );
    f.check(floor_ok == n, format!("{floor_ok}/{n} floor runs exited 0"));
    f.check(
        ours_all == n,
        format!("{ours_all}/{n} `ci submit test` printed all {count} lines in order (count and checksum)"),
    );
    f.check(
        floor_all == n,
        format!(
            "{floor_all}/{n} floor runs printed all {count} lines in order (count and checksum)"
        ),
    );
    f.metrics.push(Metric::new(
        format!("`ci submit test` wall time, {count} lines"),
        Unit::Secs,
        Goal::None,
        ours,
    ));
    f.metrics.push(Metric::new(
        "floor: bare `docker run … pytest` wall time, same lines through a pipe",
        Unit::Secs,
        Goal::None,
        floors,
    ));
    f.metrics.push(Metric::new(
        "ours / floor (per interleaved pair)",
        Unit::Ratio,
        Goal::AtMost(2.0),
        ratios,
    ));
    let bytes = lines * LINE_BYTES;
    f.notes.push(format!(
        "{count} lines of 51 bytes per run: {} bytes with their newlines ({:.2} MB); log \
         cap off (--log-cap-lines 0 --log-cap-bytes 4g); both runs' stdout read by ci-bench \
         through a pipe",
        thousands(bytes),
        bytes as f64 / 1e6
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
