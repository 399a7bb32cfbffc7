//! Helpers for the tests that submit real-world-shaped Python projects (`projects_*`): copies of
//! fixtures, `ci submit test [-- ARGS]` against a stack, pytest's summary line, and pytest run by
//! hand in the runner image for comparison. Included with `#[path]` next to `support/client.rs`
//! (as `mod support`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ci_tests::{fixture, Controller, Proc, Server, TestDb};

use crate::support::{job_id_in, run, CiEnv, Out, Stack, CI_TIMEOUT};

/// How long pytest run by hand (install + tests) may take.
pub const MANUAL_TIMEOUT: Duration = Duration::from_secs(180);

/// A stack (database, user, server, controller) whose controller gets extra flags, e.g.
/// `["--max-line-bytes", "10000"]` or `["--image", IMAGE]` (the last `--image` wins over the
/// harness's own).
pub async fn stack_with(controller_args: &[&str]) -> Stack {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let controller = Controller::start_with(&db, controller_args);
    Stack {
        db,
        server,
        controller,
        ada,
        env: CiEnv::new(),
    }
}

/// A copy of `pytest-fixtures/<name>` in a fresh temporary folder (`<tmp>/<name>`), file modes
/// kept, without caches left by earlier runs. Removed when the returned guard is dropped.
pub struct ProjectCopy {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn copy_fixture(name: &str) -> ProjectCopy {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    copy_tree(&fixture(name), &path);
    ProjectCopy { _dir: dir, path }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let kind = entry.file_type().expect("file type");
        let (src, dst) = (entry.path(), to.join(&name));
        if kind.is_dir() {
            let skipped = [
                "__pycache__",
                ".pytest_cache",
                ".cache",
                ".deps",
                "build",
                "dist",
            ];
            let name = name.to_string_lossy();
            if skipped.contains(&name.as_ref()) || name.ends_with(".egg-info") {
                continue;
            }
            copy_tree(&src, &dst);
        } else if kind.is_file() {
            // std::fs::copy keeps the permission bits (the executable bit with them).
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
    }
}

/// Sets a file's permission bits (e.g. 0o750, which git cannot store).
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// `ci submit test [-- ARGS]` as ada in `dir`, built but not started (so that several can be
/// started from one thread and finished in others).
pub fn submit_command(stack: &Stack, dir: &Path, pytest_args: &[&str]) -> Command {
    let mut args = vec!["submit", "test"];
    if !pytest_args.is_empty() {
        args.push("--");
        args.extend_from_slice(pytest_args);
    }
    stack.ci(dir, &args)
}

/// Runs `ci submit test [-- ARGS]` to completion.
pub fn submit(stack: &Stack, dir: &Path, pytest_args: &[&str]) -> Out {
    run(submit_command(stack, dir, pytest_args))
}

/// Runs several `ci submit test [-- ARGS]` at once (the controller runs some of them in
/// parallel) and returns their outputs in order.
pub fn submit_all(stack: &Stack, jobs: &[(&Path, &[&str])]) -> Vec<Out> {
    let procs: Vec<Proc> = jobs
        .iter()
        .map(|(dir, args)| Proc::spawn("ci", submit_command(stack, dir, args)))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = procs
            .into_iter()
            .map(|p| s.spawn(move || p.finish(CI_TIMEOUT)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The job id in `ci submit`'s `Job ID: <id>` line on stderr.
pub fn job_id(out: &Out) -> String {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Job ID: "))
        .unwrap_or_else(|| panic!("no `Job ID:` line on stderr:\n{}", out.stderr));
    job_id_in(line)
}

/// The counts of pytest's last summary line in `text`, without the duration:
/// `"===== 3 passed, 1 skipped in 0.12s ====="` (or `-q`'s `"3 passed, 1 skipped in 0.12s"`)
/// gives `"3 passed, 1 skipped"`.
pub fn pytest_summary(text: &str) -> Option<String> {
    text.lines().rev().find_map(summary_counts)
}

fn summary_counts(line: &str) -> Option<String> {
    let line = line.trim().trim_matches('=').trim();
    let (counts, time) = line.rsplit_once(" in ")?;
    // "0.12s" or "62.01s (0:01:02)"
    let seconds = time.split(' ').next()?.strip_suffix('s')?;
    if seconds.parse::<f64>().is_err() {
        return None;
    }
    if counts == "no tests ran" {
        return Some(counts.to_owned());
    }
    let well_formed = counts.split(", ").all(|part| {
        part.split_once(' ').is_some_and(|(n, word)| {
            n.parse::<u32>().is_ok() && !word.is_empty() && word.chars().all(char::is_alphabetic)
        })
    });
    well_formed.then(|| counts.to_owned())
}

/// Fails unless `out` (a finished `ci submit`) exited `code` with pytest's summary `expected`
/// (counts only) on stdout.
pub fn expect_outcome(what: &str, out: &Out, code: i32, expected: &str) {
    let summary = pytest_summary(&out.stdout);
    assert!(
        out.code == Some(code) && summary.as_deref() == Some(expected),
        "{what}: expected exit {code} with `{expected}`, got exit {:?} with {summary:?}\n\
         --- stdout:\n{}\n--- stderr:\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
}

/// Where a project's requirements come from when pytest is run by hand.
#[derive(Clone, Copy, Debug)]
pub enum Install {
    /// Nothing to install.
    None,
    /// `pip install --user -r FILE`.
    Requirements(&'static str),
    /// `pip install --user .[EXTRA]`.
    ProjectExtra(&'static str),
}

/// What pytest printed and how it exited when run by hand in the runner image.
#[derive(Debug)]
pub struct Manual {
    pub code: Option<i32>,
    pub summary: Option<String>,
    pub output: String,
}

/// Runs `python3 -m pytest` by hand in `image` on a fresh copy of fixture `name`, as the job's
/// user (uid 1000), without network: first the install (into `.deps/` in the copy, with
/// `PYTHONUSERBASE`; the fixtures need no network even to install), then pytest. The copy is
/// made writable for uid 1000 and handed back to the host's user afterwards.
pub fn manual_pytest(image: &str, name: &str, install: Install) -> Manual {
    let copy = copy_fixture(name);
    make_writable_by_all(&copy.path);
    // The temporary folder around the copy is private (0700) until opened up.
    chmod(copy.path.parent().expect("temp dir"), 0o755);
    let install_cmd = match install {
        Install::None => String::new(),
        Install::Requirements(file) => {
            format!("python3 -m pip install --user -r {file} >&2 || exit 90; ")
        }
        Install::ProjectExtra(extra) => {
            format!("python3 -m pip install --user '.[{extra}]' >&2 || exit 90; ")
        }
    };
    let script =
        format!("{install_cmd}python3 -m pytest; rc=$?; chmod -R a+rwX /w 2>/dev/null; exit $rc");
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none", "--user", "1000:1000"])
        .args(["-e", "HOME=/tmp", "-e", "PYTHONUSERBASE=/w/.deps"])
        .args([
            "-e",
            "PIP_BREAK_SYSTEM_PACKAGES=1",
            "-e",
            "PIP_NO_CACHE_DIR=1",
        ])
        .args(["-e", "PIP_DISABLE_PIP_VERSION_CHECK=1"])
        .args([
            "-e",
            "PATH=/w/.deps/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ])
        .arg("-v")
        .arg(format!("{}:/w", copy.path.display()))
        .args(["-w", "/w", image, "sh", "-c", &script]);
    let out = Proc::spawn(&format!("pytest by hand ({name})"), cmd).finish(MANUAL_TIMEOUT);
    assert_ne!(
        out.code,
        Some(90),
        "installing {name} by hand failed:\n{}",
        out.stderr
    );
    Manual {
        code: out.code,
        summary: pytest_summary(&out.stdout),
        output: format!("{}\n--- stderr:\n{}", out.stdout, out.stderr),
    }
}

fn make_writable_by_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).expect("stat");
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        chmod(path, mode | 0o777);
        for entry in std::fs::read_dir(path).expect("read dir") {
            make_writable_by_all(&entry.expect("dir entry").path());
        }
    } else if meta.is_file() {
        chmod(path, mode | 0o666);
    }
}
