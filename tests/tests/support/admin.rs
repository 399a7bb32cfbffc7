//! `ci-admin` run as users run it: the real binary against a database file of the test's own.

use std::path::PathBuf;
use std::process::{Command, Output};

use ci_tests::bin;

/// A temporary database and the `ci-admin` commands run on it.
pub struct Admin {
    dir: tempfile::TempDir,
}

impl Admin {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("ci.db")
    }

    /// Runs `ci-admin` on this database, in UTC so that the times it prints are the same on
    /// every machine.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("ci-admin"))
            .arg("--db-path")
            .arg(self.db())
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ci-admin {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command that must fail with exit 1 and returns its stderr: one clear error line,
    /// no panic.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "ci-admin {args:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: "),
            "one clear error line expected: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        err
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
