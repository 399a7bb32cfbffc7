//! The benchmark harness runs: `ci-bench --quick` completes every scenario with its correctness
//! checks passing (every line accounted for, no errors). Timings are not checked here.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn quick_benchmark_completes_every_scenario_correctly() {
    ci_tests::require_docker();
    for name in ["ci", "ci-server", "ci-controller"] {
        ci_tests::bin(name);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("benchmarks.md");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ci-bench"))
        .arg("--quick")
        .arg("--output")
        .arg(&output)
        .spawn()
        .expect("start ci-bench");

    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ci-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ci-bench --quick did not finish within 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let report = std::fs::read_to_string(&output).expect("ci-bench wrote its report");
    let correctness = report
        .split("## Correctness")
        .nth(1)
        .expect("the report has a Correctness section");
    for n in 1..=13 {
        let row = correctness
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_else(|| panic!("scenario {n} missing from the report:\n{report}"));
        assert!(
            row.contains("| pass |"),
            "scenario {n} did not complete correctly: {row}"
        );
    }
    assert!(status.success(), "ci-bench exited with {status}:\n{report}");
}

#[test]
fn quick_benchmark_on_postgres_writes_its_own_section() {
    ci_tests::require_docker();
    assert!(
        ci_tests::postgres::available(),
        "run scripts/ensure-postgres.sh"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("benchmarks.md");
    let status = Command::new(env!("CARGO_BIN_EXE_ci-bench"))
        .args([
            "--quick",
            "--database",
            "postgres",
            "--only",
            "pickup,log-latency",
        ])
        .arg("--output")
        .arg(&output)
        .status()
        .expect("run ci-bench");
    let report = std::fs::read_to_string(&output).expect("ci-bench wrote its report");
    assert!(status.success(), "ci-bench exited with {status}:\n{report}");
    assert!(
        report.contains("--database postgres"),
        "the section names the backend:\n{report}"
    );
    assert!(
        !report.contains("| fail |"),
        "every scenario completed:\n{report}"
    );

    // Without --only it is refused: it would replace SQLite's report.
    let refused = Command::new(env!("CARGO_BIN_EXE_ci-bench"))
        .args(["--quick", "--database", "postgres", "--output"])
        .arg(dir.path().join("other.md"))
        .output()
        .expect("run ci-bench");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--only"));
}
