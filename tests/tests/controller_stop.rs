//! Cancelling and timing out running jobs, and the sandbox settings of a real container.

#[path = "support/controller.rs"]
mod support;

#[path = "support/hostile.rs"]
mod hostile;

use std::time::Duration;

use ci_common::db::jobs;
use ci_common::JobStatus;
use ci_tests::{docker_lines, Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_has_every_sandbox_setting_and_can_be_cancelled() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let controller = Controller::start_with(
        &db,
        &[
            "--memory",
            "512m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "128",
            "--tmp-size",
            "64m",
        ],
    );
    let id = queue(&db, user.id, "slow_lines").await;
    running_with_line(&db, id, "tick 2").await;

    let name = format!("{}-{id}-test", controller.prefix);
    let out = std::process::Command::new("docker")
        .args(["inspect", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker inspect {name}");
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &inspect[0];
    let host = &c["HostConfig"];
    // The container's user is the supervisor's (root with two capabilities, only to start the
    // step as the job's user); the step itself runs as 1000:1000, with no capability.
    assert_eq!(c["Config"]["User"], "0:0");
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        host["CapAdd"],
        serde_json::json!(["CAP_SETUID", "CAP_SETGID"])
    );
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["Tmpfs"]["/tmp"], "rw,nosuid,nodev,size=64m");
    assert_eq!(host["PidsLimit"], 128);
    assert_eq!(host["Memory"], 512 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], host["Memory"]);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["NetworkMode"], "none");
    // PID 1 is the controller's supervisor (not Docker's init, which would forward a test's
    // own kill(1, SIGTERM)); it forwards Docker's stop signal to pytest.
    assert_eq!(host["Init"], false);
    assert_eq!(c["Config"]["Cmd"][0], "python3");
    assert_eq!(c["Config"]["Cmd"][1], "-I");
    assert_eq!(c["Config"]["Cmd"][2], "-c");
    assert!(c["Config"]["Cmd"][3]
        .as_str()
        .unwrap()
        .contains("sigwaitinfo"));
    assert_eq!(c["Config"]["Cmd"][4], "1000:1000");
    let cmd: Vec<&str> = c["Config"]["Cmd"].as_array().unwrap()[5..]
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd, ["python3", "-m", "pytest", "-v"]);
    // The supervisor runs as root; pytest as the job's uid.
    let top = std::process::Command::new("docker")
        .args(["top", &name, "-eo", "pid,uid,args"])
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    // Each process's uid by its command line (PID, UID, then the command).
    let uid_of = |found: &dyn Fn(&str) -> bool| {
        top.lines().find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().skip(1).collect();
            let (uid, args) = fields.split_first()?;
            found(&args.join(" ")).then(|| uid.to_string())
        })
    };
    let supervisor = uid_of(&|args| args.starts_with("python3 -I -c"));
    assert_eq!(supervisor.as_deref(), Some("0"), "{top}");
    let pytest = uid_of(&|args| args == "python3 -m pytest -v");
    assert_eq!(pytest.as_deref(), Some("1000"), "{top}");
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["LogConfig"]["Type"], "local");
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["ci.managed"], "true");
    assert_eq!(labels["ci.job_id"], id.to_string());
    assert_eq!(labels["ci.prefix"], controller.prefix);
    assert_eq!(labels["ci.step"], "test");
    assert_eq!(c["Config"]["WorkingDir"], "/workspace/src");
    let mounts = c["Mounts"].as_array().unwrap();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == target)
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    assert_eq!(mount("/workspace")["Type"], "volume");
    assert_eq!(mount("/workspace")["RW"], true);
    // The job user's name and ci's pytest plugin come from files the controller wrote,
    // mounted read-only.
    for target in ["/etc/passwd", "/etc/group", "/opt/ci/plugins"] {
        assert_eq!(mount(target)["Type"], "bind");
        assert_eq!(mount(target)["RW"], false);
    }
    assert_eq!(mounts.len(), 4, "{mounts:?}");

    jobs::request_cancel(&db.pool, id, user.id).await.unwrap();
    let job = finished(&db, id, Duration::from_secs(60)).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    let reason = job.reason.unwrap();
    assert!(reason.starts_with("cancelled by the user; "), "{reason}");
    assert!(
        reason.contains("stopped with SIGTERM"),
        "pytest ends on SIGTERM within the grace period: {reason}"
    );
    let log = log_texts(&all_events(&db, id).await).join("\n");
    assert!(
        !log.contains("tick 25"),
        "the job was stopped before it ended"
    );
    ci_tests::wait_for(
        "the cancelled job's container to be removed",
        JOB_WAIT,
        || async {
            (docker_lines(&["ps", "-aq", "--filter", &format!("name={name}")]).is_empty()
                && controller.volumes().is_empty())
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_timeout_is_stopped_and_timed_out() {
    hostile::sleep_forever_times_out(&[]).await;
}
