//! Jobs under gVisor (`--runtime runsc --runtime-with-network runsc-net`, registered by
//! scripts/ensure-gvisor.sh): the hostile fixtures end as with Docker's default runtime, through
//! the same checks as `controller_hostile`, but for one difference of Debian 12's runsc (a fork
//! costs so much memory that the fork bomb needs a lower `--pids-limit` to fail at fork rather
//! than out of memory), which is checked as such; a
//! project installs its requirements and passes, and its tests run on gVisor's kernel. Without
//! the two runtimes these tests fail under `CI=true` and are skipped, saying so, elsewhere.

#[path = "support/controller.rs"]
mod support;

#[path = "support/hostile.rs"]
mod hostile;

use std::process::Command;
use std::time::Duration;

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{bin, test_image, zip_dir, Controller, Proc, TestDb};
use support::*;

/// The controller's flags for gVisor.
const GVISOR: &[&str] = &["--runtime", "runsc", "--runtime-with-network", "runsc-net"];

/// Whether Docker has the runtimes `runsc` and `runsc-net`. When it has not, the test fails
/// under `CI=true` (scripts/test.sh registers them) and is skipped, with a note, elsewhere.
fn gvisor() -> bool {
    ci_tests::require_docker();
    let out = Command::new("docker")
        .args(["info", "--format", "{{json .Runtimes}}"])
        .output()
        .expect("docker info");
    let runtimes: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let missing: Vec<&str> = ["runsc", "runsc-net"]
        .into_iter()
        .filter(|name| runtimes.get(name).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "Docker has no runtime {} (gVisor): run scripts/ensure-gvisor.sh as root",
        missing.join(" nor ")
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what}");
    eprintln!("SKIPPED (CI is not true): {what}");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn tests_have_no_network_and_a_read_only_root() {
    if gvisor() {
        hostile::contained_fixtures_pass(GVISOR, &["network_access", "write_outside"]).await;
    }
}

/// Debian 12's runsc (2022-12) does not keep a container's PID 1 from signals sent from inside
/// (Linux ignores them unless PID 1 handles them); the supervisor is another user than the job,
/// so the job's kill(1, SIGKILL) is refused and the job passes, as with runc.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_cannot_kill_pid1() {
    if gvisor() {
        hostile::contained_fixtures_pass(GVISOR, &["kill_pid1"]).await;
    }
}

/// With `--pids-limit 48` the fork bomb's fork fails (`EAGAIN`, gVisor's `RLIMIT_NPROC`) before
/// it fills the default 1 GiB: the job passes, as with runc at the default limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained_and_the_job_ends() {
    if gvisor() {
        let flags: Vec<&str> = GVISOR
            .iter()
            .chain(&["--pids-limit", "48"])
            .copied()
            .collect();
        hostile::fork_bomb_is_contained(&flags).await;
    }
}

/// At the default `--pids-limit` (256) the memory limit comes first under gVisor: every forked
/// pytest costs about 17 MiB there, so the fork bomb is stopped as out of memory.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_default_pids_limit_a_fork_bomb_ends_out_of_memory() {
    if !gvisor() {
        return;
    }
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = Controller::start_with(&db, GVISOR);
    let id = queue(&db, user.id, "fork_bomb").await;
    let job = finished(&db, id, JOB_WAIT).await;
    assert_eq!(job.status, JobStatus::Error, "{:?}", job.reason);
    assert!(job.oom_killed);
    let reason = job.reason.unwrap();
    assert!(
        reason.starts_with("out of memory: ") && reason.contains("1g"),
        "{reason}"
    );
    ci_tests::wait_for("the container to be removed", JOB_WAIT, || async {
        controller.containers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_the_reason_names_the_limit() {
    if gvisor() {
        hostile::memory_hog_is_oom_killed(GVISOR).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_flood_keeps_head_and_tail_with_one_truncation_notice() {
    if gvisor() {
        hostile::output_flood_keeps_head_and_tail(GVISOR).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_timeout_is_stopped_and_timed_out() {
    if gvisor() {
        hostile::sleep_forever_times_out(GVISOR).await;
    }
}

/// Prints the first lines of `/proc/version` and `dmesg` (or why it could not be read) into
/// the log.
const KERNEL_TEST: &str = r#"
import subprocess


def test_print_the_kernel(capsys):
    with open("/proc/version") as f:
        version = f.read().strip()
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True)
    first = (dmesg.stdout.splitlines() or [dmesg.stderr.strip()])[0]
    with capsys.disabled():
        print(f"kernel: {version}", flush=True)
        print(f"dmesg: {first}", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn requirements_install_with_network_and_the_tests_run_on_gvisors_kernel() {
    if !gvisor() {
        return;
    }
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let flags: Vec<&str> = ["--max-concurrent-jobs", "2"]
        .iter()
        .chain(GVISOR)
        .copied()
        .collect();
    let _controller = Controller::start_with(&db, &flags);
    let install = queue(&db, user.id, "cache_greetkit").await;
    // A project whose test prints the kernel it runs on (gVisor's own starts its log with
    // "Starting gVisor...").
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("tests")).unwrap();
    std::fs::write(project.path().join("tests/test_kernel.py"), KERNEL_TEST).unwrap();
    let kernel = jobs::create(&db.pool, user.id, "test", &zip_dir(project.path()))
        .await
        .unwrap()
        .id;

    let job = finished(&db, install, JOB_WAIT).await;
    let events = all_events(&db, install).await;
    let log = log_texts(&events).join("\n");
    assert_eq!(job.status, JobStatus::Passed, "{:?}\n{log}", job.reason);
    assert!(log.contains("4 passed"), "{log}");
    // The log says what each step ran in.
    let notices = notices(&events);
    assert!(
        notices.contains(&"installing requirements.txt (runtime runsc-net)"),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("running tests: ") && n.ends_with(" (runtime runsc)")),
        "{notices:?}"
    );

    let job = finished(&db, kernel, JOB_WAIT).await;
    let log = log_texts(&all_events(&db, kernel).await).join("\n");
    assert_eq!(job.status, JobStatus::Passed, "{:?}\n{log}", job.reason);
    assert!(
        log.contains("dmesg: [    0.000000] Starting gVisor..."),
        "the tests' kernel is gVisor's:\n{log}"
    );
    let host = std::fs::read_to_string("/proc/version").unwrap();
    assert!(
        !log.contains(&format!("kernel: {}", host.trim())),
        "the tests do not see the host's kernel:\n{log}"
    );
}

#[test]
fn a_runtime_docker_does_not_have_stops_the_controller_with_how_to_register_it() {
    ci_tests::require_docker();
    let db = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("ci-controller"));
    cmd.arg("--db-path")
        .arg(db.path().join("ci.db"))
        .args([
            "--image",
            &test_image(),
            "--container-prefix",
            "citest-noruntime",
        ])
        .args([
            "--runtime",
            "runc",
            "--runtime-with-network",
            "no-such-runtime",
        ]);
    let out = Proc::spawn("ci-controller", cmd)
        .finish(Duration::from_secs(60))
        .expect_code(1);
    assert!(
        out.stderr.contains("--runtime-with-network no-such-runtime: Docker has no runtime named \"no-such-runtime\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("/etc/docker/daemon.json"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("scripts/ensure-gvisor.sh"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("controller ready"), "{}", out.stdout);
}
