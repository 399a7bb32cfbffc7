//! Every setting of a job's container, built in one place ([`container_config`]) from one
//! struct ([`Sandbox`]).

use std::collections::HashMap;

use bollard::container::Config;
use bollard::models::{HostConfig, HostConfigLogConfig, Mount, MountTypeEnum};
use ci_common::{JobId, Phase};

use crate::config::{human_size, Args};

/// Where the job's volume is mounted; the project is in `src/`, user-installed packages in `deps/`.
pub const WORKSPACE: &str = "/workspace";
pub const WORKDIR: &str = "/workspace/src";

/// Label keys every container and volume of the controller carries.
pub const LABEL_MANAGED: &str = "ci.managed";
pub const LABEL_JOB: &str = "ci.job_id";
pub const LABEL_PREFIX: &str = "ci.prefix";
pub const LABEL_PHASE: &str = "ci.phase";

/// The limits and settings of job containers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    pub image: String,
    pub prefix: String,
    /// `uid:gid`, never root.
    pub user: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub tmp_size_bytes: u64,
    pub install_network: String,
    pub test_network: String,
    /// `max-size` of Docker's json-file log of each container.
    pub log_max_size_bytes: u64,
}

/// Bytes Docker's json-file driver adds to every line (`{"log":"…\n","stream":"stdout",
/// "time":"<RFC 3339 nanos>"}` and its newline), before any escaping of the text.
pub const LOG_FRAMING_BYTES: u64 = 80;
/// Files of a container's json-file log (the current one and the rotated ones).
pub const LOG_MAX_FILES: u64 = 3;

/// `max-size` of a container's json-file log: a whole capped log with its framing (the text
/// cap plus [`LOG_FRAMING_BYTES`] for each line of the line cap), at least 64 MiB. With
/// [`LOG_MAX_FILES`] files, Docker keeps at least two such files behind the one being written,
/// so the reader can fall that far behind a fast producer before anything is rotated away.
/// Past that (a job printing faster than Docker serves its log, for longer than that), the
/// oldest unread lines are gone: they fall in the part of the log that is dropped past the
/// cap, but they are missing from the truncation notice's count, and a lag larger than the
/// kept tail would lose tail lines too.
pub fn log_max_size(cap_bytes: u64, cap_lines: u64) -> u64 {
    let text = if cap_bytes == 0 { 1 << 30 } else { cap_bytes };
    let lines = if cap_lines == 0 { text / 16 } else { cap_lines };
    text.saturating_add(lines.saturating_mul(LOG_FRAMING_BYTES))
        .max(64 << 20)
}

impl Sandbox {
    pub fn from_args(args: &Args) -> Self {
        Self {
            image: args.image.clone(),
            prefix: args.container_prefix.clone(),
            user: args.user.clone(),
            memory_bytes: args.memory as i64,
            nano_cpus: (args.cpus * 1e9) as i64,
            pids_limit: args.pids_limit,
            tmp_size_bytes: args.tmp_size,
            install_network: args.install_network.clone(),
            test_network: args.test_network.clone(),
            log_max_size_bytes: log_max_size(args.log_cap_bytes, args.log_cap_lines),
        }
    }

    pub fn container_name(&self, job: JobId, phase: Phase) -> String {
        format!("{}-{}-{}", self.prefix, job, phase.as_str())
    }

    pub fn volume_name(&self, job: JobId) -> String {
        format!("{}-{}", self.prefix, job)
    }

    /// The label filter matching everything this controller owns.
    pub fn prefix_label(&self) -> String {
        format!("{LABEL_PREFIX}={}", self.prefix)
    }

    /// Labels of a job's volume (and, with the phase, of its containers).
    pub fn labels(&self, job: JobId, phase: Option<Phase>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_JOB.to_owned(), job.to_string()),
            (LABEL_PREFIX.to_owned(), self.prefix.clone()),
        ]);
        if let Some(phase) = phase {
            labels.insert(LABEL_PHASE.to_owned(), phase.as_str().to_owned());
        }
        labels
    }
}

/// PID 1 of every container: runs the phase's command, forwards Docker's signals to it and
/// ignores signals sent from inside the container (see the script's header).
const SUPERVISOR: &str = include_str!("supervisor.py");

/// The command of a phase, run under [`SUPERVISOR`].
pub fn command(phase: Phase) -> Vec<String> {
    let args: &[&str] = match phase {
        Phase::Install => &[
            "python3",
            "-m",
            "pip",
            "install",
            "--user",
            "-r",
            "requirements.txt",
        ],
        Phase::Test => &["python3", "-m", "pytest", "-p", "no:cacheprovider"],
    };
    ["python3", "-c", SUPERVISOR]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

/// The environment of every phase: HOME on the tmpfs, packages installed into the workspace
/// volume (visible to the test phase through Python's user site), no caches, unbuffered output.
pub fn environment() -> Vec<String> {
    [
        "HOME=/tmp",
        "PYTHONUSERBASE=/workspace/deps",
        "PIP_BREAK_SYSTEM_PACKAGES=1",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        "PIP_NO_CACHE_DIR=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The whole container configuration of one phase of a job.
pub fn container_config(sandbox: &Sandbox, job: JobId, phase: Phase) -> Config<String> {
    let network = match phase {
        Phase::Install => &sandbox.install_network,
        Phase::Test => &sandbox.test_network,
    };
    let host_config = HostConfig {
        mounts: Some(vec![Mount {
            target: Some(WORKSPACE.to_owned()),
            source: Some(sandbox.volume_name(job)),
            typ: Some(MountTypeEnum::VOLUME),
            read_only: Some(false),
            ..Default::default()
        }]),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            format!(
                "rw,nosuid,nodev,size={}",
                human_size(sandbox.tmp_size_bytes)
            ),
        )])),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        memory: Some(sandbox.memory_bytes),
        memory_swap: Some(sandbox.memory_bytes),
        nano_cpus: Some(sandbox.nano_cpus),
        pids_limit: Some(sandbox.pids_limit),
        // The supervisor is PID 1: Docker's init would forward a test's own kill(1, SIGTERM).
        init: Some(false),
        network_mode: Some(network.clone()),
        privileged: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                (
                    "max-size".to_owned(),
                    format!("{}k", sandbox.log_max_size_bytes / 1024),
                ),
                ("max-file".to_owned(), LOG_MAX_FILES.to_string()),
            ])),
        }),
        ..Default::default()
    };
    Config {
        image: Some(sandbox.image.clone()),
        cmd: Some(command(phase)),
        env: Some(environment()),
        working_dir: Some(WORKDIR.to_owned()),
        user: Some(sandbox.user.clone()),
        labels: Some(sandbox.labels(job, Some(phase))),
        network_disabled: Some(network == "none"),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox {
            image: "img".into(),
            prefix: "ci".into(),
            user: "1000:1000".into(),
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            pids_limit: 256,
            tmp_size_bytes: 256 << 20,
            install_network: "bridge".into(),
            test_network: "none".into(),
            log_max_size_bytes: 64 << 20,
        }
    }

    #[test]
    fn the_json_log_holds_a_whole_capped_log_with_its_framing_twice() {
        // The defaults: 32 MiB and 1M lines of at least 80 bytes of framing each.
        let size = log_max_size(32 << 20, 1_000_000);
        assert_eq!(size, (32 << 20) + 80_000_000);
        let retained = size * (LOG_MAX_FILES - 1);
        assert!(retained >= 2 * ((32 << 20) + 1_000_000 * LOG_FRAMING_BYTES));
        assert_eq!(log_max_size(1 << 20, 1000), 64 << 20, "at least 64 MiB");
        assert!(
            log_max_size(0, 0) >= 1 << 30,
            "unlimited: a generous fixed size"
        );
    }

    #[test]
    fn every_limit_is_set_and_tests_have_no_network() {
        let job = JobId::new();
        let config = container_config(&sandbox(), job, Phase::Test);
        let host = config.host_config.clone().unwrap();
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, host.memory_swap);
        assert_eq!(host.memory, Some(1 << 30));
        assert_eq!(host.nano_cpus, Some(1_000_000_000));
        assert_eq!(host.pids_limit, Some(256));
        assert_eq!(host.init, Some(false));
        let cmd = config.cmd.clone().unwrap();
        assert_eq!(cmd[..2], ["python3", "-c"]);
        assert!(cmd[2].contains("sigwaitinfo"), "PID 1 is the supervisor");
        assert_eq!(
            cmd[3..],
            ["python3", "-m", "pytest", "-p", "no:cacheprovider"]
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(
            host.tmpfs.unwrap()["/tmp"],
            "rw,nosuid,nodev,size=256m".to_owned()
        );
        let labels = config.labels.unwrap();
        assert_eq!(labels[LABEL_JOB], job.to_string());
        assert_eq!(labels[LABEL_PHASE], "test");
        assert_eq!(labels[LABEL_PREFIX], "ci");
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(config.working_dir.as_deref(), Some(WORKDIR));
        let install = container_config(&sandbox(), job, Phase::Install);
        assert_eq!(
            install.host_config.unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(
            sandbox().container_name(job, Phase::Install),
            format!("ci-{job}-install")
        );
    }
}
