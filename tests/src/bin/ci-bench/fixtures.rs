//! Python projects generated at run time. Output that must reach the log unbuffered is written
//! inside `capsys.disabled()`: the controller runs plain `python3 -m pytest`, whose capture
//! would otherwise hold it back until the test ends.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// A generated project folder (inside the run's temp dir).
pub struct Project {
    pub dir: PathBuf,
}

impl Project {
    fn create(root: &Path, name: &str, files: &[(&str, String)]) -> Result<Self> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for (file, text) in files {
            std::fs::write(dir.join(file), text)?;
        }
        make_world_readable(&dir)?;
        Ok(Self { dir })
    }

    pub fn zip(&self) -> Vec<u8> {
        ci_tests::zip_dir(&self.dir)
    }
}

/// The bare `docker run --user 1000:1000` of the floor must read the files (and the folder is
/// writable so that pytest can write its bytecode, as it can in our sandbox).
fn make_world_readable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// One passing test and nothing else.
pub fn trivial(root: &Path, name: &str) -> Result<Project> {
    Project::create(
        root,
        name,
        &[(
            "test_trivial.py",
            "def test_adds_up():\n    assert sum(range(10)) == 45\n".to_owned(),
        )],
    )
}

/// Prints `lat <i> <time_ns>` every `interval_ms`, flushing each line.
pub fn latency(root: &Path, lines: usize, interval_ms: u64) -> Result<Project> {
    latency_named(root, "latency", lines, interval_ms)
}

/// [`latency`] in the folder `name`.
pub fn latency_named(root: &Path, name: &str, lines: usize, interval_ms: u64) -> Result<Project> {
    let test = format!(
        r#"import sys
import time

LINES = {lines}
INTERVAL_NS = {interval_ms} * 1_000_000


def test_steady_output(capsys):
    with capsys.disabled():
        out = sys.stdout
        # pytest has printed "test_x.py " without a newline: end that line first.
        out.write("\n")
        start = time.monotonic_ns()
        for i in range(LINES):
            target = start + i * INTERVAL_NS
            delay = target - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            out.write(f"lat {{i}} {{time.time_ns()}}\n")
            out.flush()
"#
    );
    Project::create(root, name, &[("test_latency.py", test)])
}

/// The `i`-th line of the flood fixture.
pub fn flood_line(i: usize) -> String {
    format!("flood {i:08} abcdefghijklmnopqrstuvwxyz0123456789")
}

/// SHA-256 (hex) of `lines`, each followed by a newline: what the flood fixture prints.
pub fn flood_checksum(lines: usize) -> String {
    let mut hash = Sha256::new();
    for i in 0..lines {
        hash.update(flood_line(i).as_bytes());
        hash.update(b"\n");
    }
    hex(&hash.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints `lines` flood lines as fast as Python can, then
/// `flood-end <start_ns> <end_ns> <count> <sha256>`.
pub fn flood(root: &Path, lines: usize) -> Result<Project> {
    flood_named(root, "flood", lines)
}

/// [`flood`] in the folder `name`.
pub fn flood_named(root: &Path, name: &str, lines: usize) -> Result<Project> {
    let test = format!(
        r#"import hashlib
import sys
import time

LINES = {lines}


def test_flood(capsys):
    digest = hashlib.sha256()
    with capsys.disabled():
        out = sys.stdout
        # pytest has printed "test_x.py " without a newline: end that line first.
        out.write("\n")
        out.flush()
        start = time.time_ns()
        batch = []
        for i in range(LINES):
            batch.append(f"flood {{i:08d}} abcdefghijklmnopqrstuvwxyz0123456789\n")
            if len(batch) == 1000:
                text = "".join(batch)
                digest.update(text.encode())
                out.write(text)
                batch.clear()
        text = "".join(batch)
        digest.update(text.encode())
        out.write(text)
        out.flush()
        end = time.time_ns()
        out.write(f"flood-end {{start}} {{end}} {{LINES}} {{digest.hexdigest()}}\n")
        out.flush()
"#
    );
    Project::create(root, name, &[("test_flood.py", test)])
}

/// Waits `delay_ms` (for the followers to connect), then prints `fan <i> <time_ns>` at
/// `rate` lines per second in batches of `batch`, flushing each batch.
pub fn fanout(
    root: &Path,
    lines: usize,
    rate: usize,
    batch: usize,
    delay_ms: u64,
) -> Result<Project> {
    let test = format!(
        r#"import sys
import time

LINES = {lines}
RATE = {rate}
BATCH = {batch}


def test_fan_out(capsys):
    time.sleep({delay_ms} / 1000)
    with capsys.disabled():
        out = sys.stdout
        # pytest has printed "test_x.py " without a newline: end that line first.
        out.write("\n")
        start = time.monotonic_ns()
        i = 0
        while i < LINES:
            target = start + i * 1_000_000_000 // RATE
            delay = target - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            end = min(i + BATCH, LINES)
            now = time.time_ns()
            out.write("".join(f"fan {{j}} {{now}}\n" for j in range(i, end)))
            out.flush()
            i = end
"#
    );
    Project::create(root, "fanout", &[("test_fanout.py", test)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_pythons_output_format() {
        assert_eq!(
            flood_line(7),
            "flood 00000007 abcdefghijklmnopqrstuvwxyz0123456789"
        );
        // sha256 of the empty string
        assert_eq!(
            flood_checksum(0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
