//! Every setting of a job's container, built in one place ([`container_config`]) from one
//! struct ([`Sandbox`]) and the step it runs ([`Run`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::container::Config;
use bollard::models::{HostConfig, HostConfigLogConfig, Mount, MountTypeEnum, ResourcesUlimits};
use ci_common::step::{Network, StepSpec};
use ci_common::{JobId, UserId};

use crate::config::{human_size, Args};

/// Where the job's volume is mounted; the project is in `src/`, installed packages in `deps/`,
/// the job user's home in `home/`.
pub const WORKSPACE: &str = "/workspace";
pub const WORKDIR: &str = "/workspace/src";
/// `PYTHONUSERBASE`: `pip install --user` puts packages and console scripts here.
pub const DEPS: &str = "/workspace/deps";
/// The job user's home folder (on the workspace volume: it persists from step to step).
pub const HOME: &str = "/workspace/home";
/// Where an install step mounts its user's pip cache.
pub const PIP_CACHE: &str = "/workspace/pip-cache";
/// The job user's name, whatever its uid: `USER`, `LOGNAME` and its passwd entry.
pub const JOB_USER: &str = "runner";
/// `PATH` of every step after its installed packages' `bin` (`/usr/local/bin` holds the
/// interpreter of the `python:*` images).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a step's installed packages live: [`DEPS`], or the folder of its own in the workspace
/// (a task in another image than the job's, [`StepSpec::deps_dir`]).
pub fn deps_of(step: &StepSpec) -> String {
    match &step.deps_dir {
        Some(dir) => format!("{WORKSPACE}/{dir}"),
        None => DEPS.to_owned(),
    }
}

/// Label keys every container and volume of the controller carries.
pub const LABEL_MANAGED: &str = "ci.managed";
pub const LABEL_JOB: &str = "ci.job_id";
pub const LABEL_PREFIX: &str = "ci.prefix";
/// The step a container runs.
pub const LABEL_STEP: &str = "ci.step";
/// The label of dependency cache volumes (value: the controller's prefix). They outlive jobs,
/// so they carry neither [`LABEL_JOB`] nor [`LABEL_PREFIX`].
pub const LABEL_CACHE: &str = "ci.cache";
/// The label of users' pip cache volumes (value: the controller's prefix).
pub const LABEL_PIP_CACHE: &str = "ci.pip_cache";
/// The label naming the user a pip cache volume belongs to.
pub const LABEL_USER: &str = "ci.user_id";
/// What earlier versions called the step (`install` or `test`), read on reattach.
const LABEL_PHASE: &str = "ci.phase";

/// The step of a container from its labels.
pub fn step_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels
        .get(LABEL_STEP)
        .or_else(|| labels.get(LABEL_PHASE))
        .map(String::as_str)
}

/// The limits and settings of job containers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    /// The default image (a job may ask for another the operator allows).
    pub image: String,
    pub prefix: String,
    /// The job's `uid:gid`, never root; the container runs as [`SUPERVISOR_USER`].
    pub user: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub tmp_size_bytes: u64,
    pub install_network: String,
    pub test_network: String,
    /// The network of the fetch step of jobs from git (`--git-network`).
    pub git_network: String,
    /// The OCI runtimes of steps without and with network.
    pub runtimes: Runtimes,
    /// `max-size` of Docker's log of each container.
    pub log_max_size_bytes: u64,
    /// The folder holding the generated `passwd` and `group` files mounted read-only into every
    /// container (see [`write_identity`]), as the Docker host sees it ([`crate::host_path`]).
    pub identity_dir: PathBuf,
    /// The folder holding ci's pytest plugin, mounted read-only at [`PLUGINS`] (see
    /// [`write_plugins`]), as the Docker host sees it.
    pub plugins_dir: PathBuf,
}

/// Bytes Docker's `local` log driver adds to every line (a protobuf record with the stream, the
/// time and, for the pieces of a line longer than 16 KiB, partial-message metadata, between two
/// length words); generous, so the log file holds a whole capped log.
pub const LOG_FRAMING_BYTES: u64 = 80;
/// Files of a container's log (the current one and the rotated ones).
pub const LOG_MAX_FILES: u64 = 3;

/// `max-size` of a container's log file: a whole capped log with its framing (the text cap plus
/// [`LOG_FRAMING_BYTES`] for each line of the line cap), at least 64 MiB. With
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

/// The OCI runtime of a job container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Runtime {
    /// The name registered with Docker (`runsc`); `None`: Docker's default runtime.
    pub name: Option<String>,
    /// The runtime is gVisor (its binary is `runsc`), whose kernel runs the job's processes.
    pub gvisor: bool,
}

/// Host pids (cgroup `pids.max`) a gVisor sandbox may use for each task of the job: on its
/// default (ptrace) platform each process of the job is also a stub process on the host, with
/// threads of gVisor's own beside them (measured: about 25 at rest, and 7.5 more for each
/// forked bare Python process, 11 for each forked pytest). Half as much again as the most.
pub const GVISOR_HOST_PIDS_PER_TASK: i64 = 16;
/// Host pids of a gVisor sandbox beyond [`GVISOR_HOST_PIDS_PER_TASK`]: its own threads at rest.
pub const GVISOR_HOST_PIDS_BASE: i64 = 64;
/// Memory a forked process of the job costs under gVisor, with a margin (measured: 3.6 MiB for
/// a bare Python, 17 MiB for a fork of pytest; runc shares the pages until they are written).
pub const GVISOR_MEMORY_PER_PROCESS: i64 = 20 << 20;

impl Runtime {
    /// The container's `pids.max` on the host for a job allowed `pids_limit` processes. A gVisor
    /// sandbox dies as a whole (no `EAGAIN` for the job) when its own threads reach the host
    /// limit, so it gets room for them, and [`Runtime::ulimits`] holds the job to `pids_limit`.
    pub fn host_pids_limit(&self, pids_limit: i64) -> i64 {
        if self.gvisor {
            pids_limit
                .saturating_mul(GVISOR_HOST_PIDS_PER_TASK)
                .saturating_add(GVISOR_HOST_PIDS_BASE)
        } else {
            pids_limit
        }
    }

    /// The container's ulimits. Under gVisor, `nproc` (`RLIMIT_NPROC`) at `pids_limit`: gVisor's
    /// kernel counts the job's own processes and threads against it, per sandbox, and fork
    /// fails with `EAGAIN` past it, as under the host's `pids.max` with runc. (Under runc it
    /// would count every process of the uid on the host, other jobs' included.)
    pub fn ulimits(&self, pids_limit: i64) -> Option<Vec<ResourcesUlimits>> {
        self.gvisor.then(|| {
            vec![ResourcesUlimits {
                name: Some("nproc".to_owned()),
                soft: Some(pids_limit),
                hard: Some(pids_limit),
            }]
        })
    }

    /// Under gVisor, the most processes a job can fork before it fills `memory_bytes`
    /// ([`GVISOR_MEMORY_PER_PROCESS`] each) when that is below `pids_limit`: a fork bomb then
    /// ends out of memory rather than with fork failing, and `--pids-limit` at this value
    /// restores the latter. `None` under other runtimes and when the limit comes first.
    pub fn pids_limit_past_memory(&self, pids_limit: i64, memory_bytes: i64) -> Option<i64> {
        let fits = memory_bytes / GVISOR_MEMORY_PER_PROCESS;
        (self.gvisor && pids_limit > fits).then_some(fits.max(1))
    }

    /// Whether the supervisor gives the job output pipes of the container's own kernel and
    /// copies them out (`--relay`, see supervisor.py): under gVisor (Debian 12's runsc) a write
    /// to the container's stdout or stderr can be short, and a program that does not write the
    /// rest loses it — Python with `PYTHONUNBUFFERED=1` lost 94% of a 300 MB flood.
    pub fn relays_output(&self) -> bool {
        self.gvisor
    }
}

/// The OCI runtimes of job containers (`--runtime`, `--runtime-with-network`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Runtimes {
    /// Steps without network (the tests).
    pub offline: Runtime,
    /// Steps with network (the install step).
    pub online: Runtime,
}

impl Runtimes {
    /// The runtimes `--runtime` and `--runtime-with-network` name (the latter defaults to the
    /// former), checked against those Docker has: `installed` maps each name to the path of its
    /// binary, and `default` is the name of Docker's default runtime (`docker info`). `Err`
    /// says which runtime is missing and how to register it.
    pub fn resolve(
        args: &Args,
        installed: &HashMap<String, String>,
        default: Option<&str>,
    ) -> Result<Self, String> {
        let gvisor = |name: &str| {
            let binary = installed.get(name).map_or(name, String::as_str);
            Path::new(binary)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("runsc"))
        };
        let runtime = |flag: &str, name: Option<&String>| match name {
            None => Ok(Runtime {
                name: None,
                gvisor: default.is_some_and(gvisor),
            }),
            Some(name) if installed.contains_key(name) => Ok(Runtime {
                name: Some(name.clone()),
                gvisor: gvisor(name),
            }),
            Some(name) => {
                let mut known: Vec<&str> = installed.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(format!(
                    "{flag} {name}: Docker has no runtime named {name:?} (it has: {}). Register \
                     it under \"runtimes\" in /etc/docker/daemon.json and reload dockerd (kill \
                     -HUP); for gVisor, scripts/ensure-gvisor.sh installs runsc and registers \
                     runsc (--network=none) and runsc-net (--network=host) for \
                     --runtime runsc --runtime-with-network runsc-net",
                    known.join(", ")
                ))
            }
        };
        let with_network = args.runtime_with_network.as_ref().or(args.runtime.as_ref());
        let flag = if args.runtime_with_network.is_some() {
            "--runtime-with-network"
        } else {
            "--runtime"
        };
        Ok(Self {
            offline: runtime("--runtime", args.runtime.as_ref())?,
            online: runtime(flag, with_network)?,
        })
    }

    /// The runtime of a step with or without network.
    pub fn of(&self, network: Network) -> &Runtime {
        match network {
            Network::Online | Network::Git => &self.online,
            Network::Offline => &self.offline,
        }
    }
}

impl Sandbox {
    /// The sandbox of `args`, with its runtimes resolved by [`Runtimes::resolve`].
    pub fn from_args(args: &Args, runtimes: Runtimes) -> Self {
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
            git_network: args.git_network.clone(),
            runtimes,
            log_max_size_bytes: log_max_size(args.log_cap_bytes, args.log_cap_lines),
            identity_dir: args.identity_dir(),
            plugins_dir: args.plugins_dir(),
        }
    }

    /// What the log says as a step starts: the step's notice, and the runtime it runs in
    /// when one is chosen (`running tests: python3 -m pytest -v (runtime runsc)`).
    pub fn step_notice(&self, step: &StepSpec) -> String {
        match &self.runtimes.of(step.network).name {
            Some(name) => format!("{} (runtime {name})", step.notice),
            None => step.notice.clone(),
        }
    }

    pub fn container_name(&self, job: JobId, step: &str) -> String {
        format!("{}-{}-{}", self.prefix, job, step)
    }

    pub fn volume_name(&self, job: JobId) -> String {
        format!("{}-{}", self.prefix, job)
    }

    /// The name of a dependency cache entry's volume.
    pub fn cache_volume_name(&self, entry: &str) -> String {
        format!("{}-deps-{entry}", self.prefix)
    }

    /// The labels of a dependency cache volume.
    pub fn cache_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_CACHE.to_owned(), self.prefix.clone()),
        ])
    }

    /// The name of a user's pip cache volume.
    pub fn pip_cache_volume_name(&self, user: UserId) -> String {
        format!("{}-pip-{user}", self.prefix)
    }

    /// The labels of a user's pip cache volume.
    pub fn pip_cache_labels(&self, user: UserId) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_PIP_CACHE.to_owned(), self.prefix.clone()),
            (LABEL_USER.to_owned(), user.to_string()),
        ])
    }

    /// The label filter matching this controller's dependency cache volumes.
    pub fn cache_label(&self) -> String {
        format!("{LABEL_CACHE}={}", self.prefix)
    }

    /// The label filter matching everything this controller owns.
    pub fn prefix_label(&self) -> String {
        format!("{LABEL_PREFIX}={}", self.prefix)
    }

    /// Labels of a job's volume (and, with the step, of its containers).
    pub fn labels(&self, job: JobId, step: Option<&str>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_JOB.to_owned(), job.to_string()),
            (LABEL_PREFIX.to_owned(), self.prefix.clone()),
        ]);
        if let Some(step) = step {
            labels.insert(LABEL_STEP.to_owned(), step.to_owned());
        }
        labels
    }
}

/// The `passwd` and `group` files of every job container: `root`, `nobody` and the job user
/// ([`JOB_USER`], home [`HOME`]) with the job's uid and gid, so that the user has a name
/// (`getpass.getuser()`, `id`, `~`) in any image, including images without such a user.
pub fn identity_files(uid: u64, gid: u64) -> (String, String) {
    let passwd = format!(
        "root:x:0:0:root:/root:/bin/sh\n\
         {JOB_USER}:x:{uid}:{gid}:ci job:{HOME}:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\n{JOB_USER}:x:{gid}:\nnogroup:x:65534:\n");
    (passwd, group)
}

/// Writes [`identity_files`] into `dir` (created if needed; each file replaced atomically), so
/// the containers can mount them.
pub fn write_identity(dir: &Path, uid: u64, gid: u64) -> std::io::Result<()> {
    let (passwd, group) = identity_files(uid, gid);
    write_state_files(dir, &[("passwd", &passwd), ("group", &group)])
}

/// Writes the controller's files that containers mount read-only into `dir` (created if needed,
/// 0755): each file 0644, replaced atomically so a starting container never sees half of one.
/// Each writer has a temporary file of its own, so that controllers starting at once with the
/// same state folder (one waits for the other's lock) do not move each other's files.
fn write_state_files(dir: &Path, files: &[(&str, &str)]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, text) in files {
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// Where ci's pytest plugin and install driver are mounted (read-only); the plugin is importable
/// from there.
pub const PLUGINS: &str = ci_common::step::PLUGINS_DIR;
/// The plugin's module name, loaded by pytest through `PYTEST_PLUGINS`.
pub const RESULTS_PLUGIN: &str = "ci_results";
/// ci's own files in the workspace volume (outside the project): the test reports.
pub const CI_DIR: &str = "/workspace/.ci";

/// The plugin that records each test's result (see its header).
const RESULTS_PLUGIN_SOURCE: &str = include_str!("ci_results.py");

/// Where the test report of a step is written in its container.
pub fn results_file(step: &str) -> String {
    format!("{CI_DIR}/results-{step}.jsonl")
}

/// The install step's driver (see its header and [`ci_common::step::INSTALL_DRIVER`]).
const INSTALL_DRIVER_SOURCE: &str = include_str!("ci_install.py");

/// Writes ci's pytest plugin and install driver into `dir` (created if needed; each replaced
/// atomically).
pub fn write_plugins(dir: &Path) -> std::io::Result<()> {
    let name = format!("{RESULTS_PLUGIN}.py");
    write_state_files(
        dir,
        &[
            (&name, RESULTS_PLUGIN_SOURCE),
            (ci_common::step::INSTALL_DRIVER, INSTALL_DRIVER_SOURCE),
        ],
    )
}

/// PID 1 of every container: runs the step's command, forwards Docker's signals to it and
/// ignores signals sent from inside the container (see the script's header).
const SUPERVISOR: &str = include_str!("supervisor.py");

/// The container's user: the supervisor's. It is not the job's user ([`Sandbox::user`], which
/// the supervisor becomes before it starts the step's command), so nothing the job runs may
/// signal, trace or read PID 1, under any runtime.
pub const SUPERVISOR_USER: &str = "0:0";

/// The only capabilities of a job container: the supervisor's, to become the job's user. The
/// job's processes have none (changing to a uid other than 0 clears them, and
/// `no-new-privileges` keeps setuid programs from giving any back).
pub const SUPERVISOR_CAPABILITIES: [&str; 2] = ["CAP_SETUID", "CAP_SETGID"];

/// One container run of a job: which job and task, and the step's specification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run<'a> {
    pub job: JobId,
    /// The job's task (`CI_JOB_TASK`).
    pub task: &'a str,
    pub step: &'a StepSpec,
    /// `KEY=VALUE` after the step's own, that the stored plan must not hold (a git credential).
    pub secret_env: &'a [String],
}

/// The environment of every step: what a developer's shell has (`USER`, `LOGNAME`, a writable
/// `HOME`, a UTF-8 locale, `TZ`, console scripts of installed packages on `PATH`), installed
/// packages visible through Python's user site, unbuffered output, and the variables CI systems
/// set (`CI=true`, `CI_JOB_ID`, ...).
pub fn environment(run: &Run<'_>) -> Vec<String> {
    let step = run.step;
    let mut env: Vec<String> = [
        format!("USER={JOB_USER}"),
        format!("LOGNAME={JOB_USER}"),
        format!("HOME={HOME}"),
        format!("PATH={}/bin:{SYSTEM_PATH}", deps_of(step)),
        "LANG=C.UTF-8".to_owned(),
        "LC_ALL=C.UTF-8".to_owned(),
        "TZ=UTC".to_owned(),
        format!("PYTHONUSERBASE={}", deps_of(step)),
        "PYTHONUNBUFFERED=1".to_owned(),
        "PYTHONDONTWRITEBYTECODE=1".to_owned(),
        "PIP_BREAK_SYSTEM_PACKAGES=1".to_owned(),
        "PIP_DISABLE_PIP_VERSION_CHECK=1".to_owned(),
        // pip keeps no cache of its own, but for the user's pip cache of an install step.
        match step.pip_cache {
            Some(_) => format!("PIP_CACHE_DIR={PIP_CACHE}"),
            None => "PIP_NO_CACHE_DIR=1".to_owned(),
        },
        "PIP_NO_WARN_SCRIPT_LOCATION=1".to_owned(),
        "CI=true".to_owned(),
        format!("CI_JOB_ID={}", run.job),
        format!("CI_JOB_TASK={}", run.task),
        format!("CI_JOB_STEP={}", step.name),
        format!("CI_JOB_IMAGE={}", step.image),
        // Which run of the tests this is (1, then 2, 3, ... for retries of failed tests).
        format!("CI_ATTEMPT={}", step.attempt),
        format!("CI_PROJECT_DIR={WORKDIR}"),
        // ci's pytest plugin records each test's result for the job (see ci_results.py).
        format!("PYTHONPATH={PLUGINS}"),
        format!("PYTEST_PLUGINS={RESULTS_PLUGIN}"),
        format!("CI_RESULTS_FILE={}", results_file(&step.name)),
    ]
    .into();
    if !step.rerun.is_empty() {
        // A retry: the plugin runs only these tests (of those the command selects).
        env.push(format!("CI_RERUN={}", step.rerun.join("\n")));
    }
    env.extend(step.env.iter().cloned());
    env.extend(run.secret_env.iter().cloned());
    env
}

/// The whole container configuration of one step of a job.
pub fn container_config(sandbox: &Sandbox, run: &Run<'_>) -> Config<String> {
    let step = run.step;
    let network = match step.network {
        Network::Online => &sandbox.install_network,
        Network::Offline => &sandbox.test_network,
        Network::Git => &sandbox.git_network,
    };
    let runtime = sandbox.runtimes.of(step.network);
    let identity = |name: &str, target: &str| Mount {
        target: Some(target.to_owned()),
        source: Some(
            sandbox
                .identity_dir
                .join(name)
                .to_string_lossy()
                .into_owned(),
        ),
        typ: Some(MountTypeEnum::BIND),
        read_only: Some(true),
        ..Default::default()
    };
    let host_config = HostConfig {
        mounts: Some(
            vec![
                Mount {
                    target: Some(WORKSPACE.to_owned()),
                    source: Some(sandbox.volume_name(run.job)),
                    typ: Some(MountTypeEnum::VOLUME),
                    read_only: Some(false),
                    ..Default::default()
                },
                identity("passwd", "/etc/passwd"),
                identity("group", "/etc/group"),
                Mount {
                    target: Some(PLUGINS.to_owned()),
                    source: Some(sandbox.plugins_dir.to_string_lossy().into_owned()),
                    typ: Some(MountTypeEnum::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]
            .into_iter()
            // The dependency cache: written by a miss's install step, read-only for the tests.
            .chain(step.cache.as_ref().map(|cache| Mount {
                target: Some(DEPS.to_owned()),
                source: Some(cache.volume.clone()),
                typ: Some(MountTypeEnum::VOLUME),
                read_only: Some(!cache.write),
                ..Default::default()
            }))
            .collect(),
        ),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            format!(
                "rw,nosuid,nodev,size={}",
                human_size(sandbox.tmp_size_bytes)
            ),
        )])),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(SUPERVISOR_CAPABILITIES.map(str::to_owned).into()),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        memory: Some(sandbox.memory_bytes),
        memory_swap: Some(sandbox.memory_bytes),
        nano_cpus: Some(sandbox.nano_cpus),
        pids_limit: Some(runtime.host_pids_limit(sandbox.pids_limit)),
        ulimits: runtime.ulimits(sandbox.pids_limit),
        runtime: runtime.name.clone(),
        // The supervisor is PID 1: Docker's init would forward a test's own kill(1, SIGTERM).
        init: Some(false),
        network_mode: Some(network.clone()),
        privileged: Some(false),
        // The `local` driver stores the bytes as written: a character cut where Docker splits a
        // long line into 16 KiB pieces is joined again when the pieces are read back (json-file
        // would have replaced each half with U+FFFD).
        log_config: Some(HostConfigLogConfig {
            typ: Some("local".to_owned()),
            config: Some(HashMap::from([
                (
                    "max-size".to_owned(),
                    format!("{}k", sandbox.log_max_size_bytes / 1024),
                ),
                ("max-file".to_owned(), LOG_MAX_FILES.to_string()),
                ("compress".to_owned(), "false".to_owned()),
            ])),
        }),
        ..Default::default()
    };
    let relay = runtime.relays_output().then_some("--relay");
    let cmd = ["python3", "-I", "-c", SUPERVISOR, &sandbox.user]
        .into_iter()
        .chain(relay)
        .map(str::to_owned)
        .chain(step.command.iter().cloned())
        .collect();
    Config {
        image: Some(step.image.to_owned()),
        cmd: Some(cmd),
        env: Some(environment(run)),
        working_dir: Some(WORKDIR.to_owned()),
        user: Some(SUPERVISOR_USER.to_owned()),
        labels: Some(sandbox.labels(run.job, Some(&step.name))),
        // `network_mode: none` alone cuts the network and keeps the loopback interface with an
        // /etc/hosts that names it; `network_disabled` would also drop /etc/hosts, and
        // `localhost` would not resolve.
        network_disabled: Some(false),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

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
            git_network: "bridge".into(),
            runtimes: Runtimes::default(),
            log_max_size_bytes: 64 << 20,
            identity_dir: "/var/lib/ci/identity".into(),
            plugins_dir: "/var/lib/ci/plugins".into(),
        }
    }

    /// The built-in test task's steps for a project with requirements: install, test.
    fn steps() -> Vec<StepSpec> {
        let root = ci_common::project::RootFiles::from_pairs([("requirements.txt", &b""[..])]);
        ci_common::step::test_task(&root, "img", &[], ci_common::project::Installer::Auto)
            .unwrap()
            .0
    }

    fn run(job: JobId, step: &StepSpec) -> Run<'_> {
        Run {
            job,
            task: "test",
            step,
            secret_env: &[],
        }
    }

    #[test]
    fn the_environment_is_a_developers_shell_plus_ci_variables() {
        let job = JobId::new();
        let mut test = steps()[1].clone();
        test.env.push("EXTRA=1".into());
        let env = environment(&run(job, &test));
        assert!(env.contains(&"CI_JOB_STEP=test".to_owned()));
        assert!(env.contains(&"CI_ATTEMPT=1".to_owned()));
        assert!(!env.iter().any(|e| e.starts_with("CI_RERUN=")));
        let retry = test
            .retry(&["t.py::a".into(), "t.py::b[x y]".into()], 2)
            .unwrap();
        let retry_env = environment(&run(job, &retry));
        assert!(retry_env.contains(&"CI_ATTEMPT=2".to_owned()));
        assert!(retry_env.contains(&"CI_RERUN=t.py::a\nt.py::b[x y]".to_owned()));
        assert!(retry_env.contains(&"CI_JOB_STEP=retry-1".to_owned()));
        assert!(env.contains(&"PIP_NO_CACHE_DIR=1".to_owned()));
        let mut install = steps()[0].clone();
        install.pip_cache = Some("ci-pip-u".into());
        let install_env = environment(&run(job, &install));
        assert!(install_env.contains(&format!("PIP_CACHE_DIR={PIP_CACHE}")));
        assert!(!install_env
            .iter()
            .any(|e| e.starts_with("PIP_NO_CACHE_DIR")));
        assert!(env.contains(&format!("PATH=/workspace/deps/bin:{SYSTEM_PATH}")));
        let mut other = test.clone();
        other.deps_dir = Some("deps-compat".into());
        let other_env = environment(&run(job, &other));
        assert!(other_env.contains(&"PYTHONUSERBASE=/workspace/deps-compat".to_owned()));
        assert!(other_env.contains(&format!("PATH=/workspace/deps-compat/bin:{SYSTEM_PATH}")));
        assert_eq!(
            env.last().map(String::as_str),
            Some("EXTRA=1"),
            "the step's own last"
        );
        for expected in [
            "USER=runner".to_owned(),
            "LOGNAME=runner".to_owned(),
            "HOME=/workspace/home".to_owned(),
            "LANG=C.UTF-8".to_owned(),
            "LC_ALL=C.UTF-8".to_owned(),
            "TZ=UTC".to_owned(),
            "PYTHONUNBUFFERED=1".to_owned(),
            "CI=true".to_owned(),
            format!("CI_JOB_ID={job}"),
            "CI_JOB_TASK=test".to_owned(),
        ] {
            assert!(env.contains(&expected), "{expected} in {env:?}");
        }
        let path = env.iter().find(|v| v.starts_with("PATH=")).unwrap();
        assert!(path.starts_with("PATH=/workspace/deps/bin:"), "{path}");
    }

    #[test]
    fn the_identity_names_the_job_user() {
        let (passwd, group) = identity_files(1234, 5678);
        assert!(passwd
            .lines()
            .any(|l| l == "runner:x:1234:5678:ci job:/workspace/home:/bin/sh"));
        assert!(passwd.starts_with("root:x:0:0:"));
        assert!(group.lines().any(|l| l == "runner:x:5678:"));
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("identity");
        write_identity(&target, 1234, 5678).unwrap();
        write_identity(&target, 1234, 5678).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("passwd")).unwrap(),
            passwd
        );
        assert_eq!(
            std::fs::read_to_string(target.join("group")).unwrap(),
            group
        );
    }

    #[test]
    fn the_log_file_holds_a_whole_capped_log_with_its_framing_twice() {
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
        let steps = steps();
        let config = container_config(&sandbox(), &run(job, &steps[1]));
        let host = config.host_config.clone().unwrap();
        assert_eq!(config.user.as_deref(), Some(SUPERVISOR_USER));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.cap_add,
            Some(vec!["CAP_SETUID".to_owned(), "CAP_SETGID".to_owned()])
        );
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
        assert_eq!(cmd[..3], ["python3", "-I", "-c"]);
        assert!(cmd[3].contains("sigwaitinfo"), "PID 1 is the supervisor");
        assert_eq!(cmd[4], "1000:1000", "the job's user");
        assert_eq!(cmd[5..], ["python3", "-m", "pytest", "-v"]);
        assert_eq!(config.image.as_deref(), Some("img"));
        let mounts = host.mounts.clone().unwrap();
        let passwd = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/etc/passwd"))
            .expect("a passwd file is mounted");
        assert_eq!(passwd.read_only, Some(true));
        assert_eq!(
            passwd.source.as_deref(),
            Some("/var/lib/ci/identity/passwd")
        );
        assert!(mounts
            .iter()
            .any(|m| m.target.as_deref() == Some("/etc/group") && m.read_only == Some(true)));
        assert_eq!(
            host.log_config.clone().unwrap().typ.as_deref(),
            Some("local")
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(config.network_disabled, Some(false), "keeps /etc/hosts");
        assert_eq!(
            host.tmpfs.unwrap()["/tmp"],
            "rw,nosuid,nodev,size=256m".to_owned()
        );
        let labels = config.labels.unwrap();
        assert_eq!(labels[LABEL_JOB], job.to_string());
        assert_eq!(labels[LABEL_STEP], "test");
        assert_eq!(step_of(&labels), Some("test"));
        assert_eq!(labels[LABEL_PREFIX], "ci");
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(config.working_dir.as_deref(), Some(WORKDIR));
        let install = container_config(&sandbox(), &run(job, &steps[0]));
        assert_eq!(
            install.host_config.unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(
            sandbox().container_name(job, "install"),
            format!("ci-{job}-install")
        );
        assert_eq!(host.runtime, None, "Docker's default runtime");
        assert_eq!(host.ulimits, None);
        assert_eq!(sandbox().step_notice(&steps[1]), steps[1].notice);
    }

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ci-controller").chain(flags.iter().copied())).unwrap()
    }

    fn installed() -> HashMap<String, String> {
        HashMap::from([
            ("runc".to_owned(), "runc".to_owned()),
            ("runsc".to_owned(), "/usr/bin/runsc".to_owned()),
            ("runsc-net".to_owned(), "/usr/bin/runsc".to_owned()),
            ("kata".to_owned(), "/opt/kata/bin/kata-runtime".to_owned()),
        ])
    }

    #[test]
    fn runtimes_are_checked_against_dockers_and_gvisor_is_known_by_its_binary() {
        let resolve = |flags: &[&str]| Runtimes::resolve(&args(flags), &installed(), Some("runc"));
        assert_eq!(resolve(&[]).unwrap(), Runtimes::default());
        let both = resolve(&["--runtime", "runsc", "--runtime-with-network", "runsc-net"]).unwrap();
        assert_eq!(both.offline.name.as_deref(), Some("runsc"));
        assert_eq!(both.online.name.as_deref(), Some("runsc-net"));
        assert!(both.offline.gvisor && both.online.gvisor);
        let one = resolve(&["--runtime", "kata"]).unwrap();
        assert_eq!(
            one.online, one.offline,
            "--runtime-with-network defaults to --runtime"
        );
        assert!(!one.offline.gvisor);
        let missing =
            resolve(&["--runtime", "runsc", "--runtime-with-network", "gvisor-net"]).unwrap_err();
        assert!(
            missing.starts_with("--runtime-with-network gvisor-net: "),
            "{missing}"
        );
        assert!(
            missing.contains("(it has: kata, runc, runsc, runsc-net)"),
            "{missing}"
        );
        assert!(missing.contains("/etc/docker/daemon.json"), "{missing}");
        assert!(missing.contains("scripts/ensure-gvisor.sh"), "{missing}");
        assert!(resolve(&["--runtime", "nope"])
            .unwrap_err()
            .starts_with("--runtime nope: "));
        // Docker's default runtime may itself be gVisor.
        let default = Runtimes::resolve(&args(&[]), &installed(), Some("runsc")).unwrap();
        assert_eq!(default.offline.name, None);
        assert!(default.offline.gvisor);
        assert!(Args::try_parse_from(["ci-controller", "--runtime", "a b"]).is_err());
    }

    /// The sandbox with `--runtime runsc --runtime-with-network runsc-net`.
    fn gvisor_sandbox() -> Sandbox {
        let mut sandbox = sandbox();
        sandbox.runtimes = Runtimes::resolve(
            &args(&["--runtime", "runsc", "--runtime-with-network", "runsc-net"]),
            &installed(),
            Some("runc"),
        )
        .unwrap();
        sandbox
    }

    #[test]
    fn each_step_runs_in_its_runtime_and_says_so() {
        let job = JobId::new();
        let steps = steps();
        let mut sandbox = gvisor_sandbox();
        let host = |sandbox: &Sandbox, step| {
            container_config(sandbox, &run(job, step))
                .host_config
                .unwrap()
        };
        let (install, test) = (host(&sandbox, &steps[0]), host(&sandbox, &steps[1]));
        assert_eq!(install.runtime.as_deref(), Some("runsc-net"));
        assert_eq!(install.network_mode.as_deref(), Some("bridge"));
        assert_eq!(test.runtime.as_deref(), Some("runsc"));
        assert_eq!(test.network_mode.as_deref(), Some("none"));
        assert_eq!(
            sandbox.step_notice(&steps[1]),
            format!("{} (runtime runsc)", steps[1].notice)
        );
        assert_eq!(
            sandbox.step_notice(&steps[0]),
            "installing requirements.txt (runtime runsc-net)"
        );
        sandbox.runtimes =
            Runtimes::resolve(&args(&["--runtime", "kata"]), &installed(), None).unwrap();
        assert_eq!(host(&sandbox, &steps[0]).runtime.as_deref(), Some("kata"));
        assert_eq!(host(&sandbox, &steps[1]).runtime.as_deref(), Some("kata"));
    }

    #[test]
    fn gvisor_holds_the_job_to_the_pids_limit_and_leaves_room_for_its_own() {
        let job = JobId::new();
        for step in &steps() {
            let host = container_config(&gvisor_sandbox(), &run(job, step))
                .host_config
                .unwrap();
            let nproc = ResourcesUlimits {
                name: Some("nproc".into()),
                soft: Some(256),
                hard: Some(256),
            };
            assert_eq!(host.ulimits, Some(vec![nproc]), "{}", step.name);
            assert_eq!(host.pids_limit, Some(256 * 16 + 64), "{}", step.name);
        }
        // Another runtime keeps the host's limit, and no rlimit.
        let mut kata = sandbox();
        kata.runtimes =
            Runtimes::resolve(&args(&["--runtime", "kata"]), &installed(), None).unwrap();
        let host = container_config(&kata, &run(job, &steps()[1]))
            .host_config
            .unwrap();
        assert_eq!(host.pids_limit, Some(256));
        assert_eq!(host.ulimits, None);
    }

    #[test]
    fn under_gvisor_a_pids_limit_past_what_the_memory_holds_is_named() {
        let gvisor = Runtime {
            name: Some("runsc".into()),
            gvisor: true,
        };
        assert_eq!(gvisor.pids_limit_past_memory(256, 1 << 30), Some(51));
        assert_eq!(gvisor.pids_limit_past_memory(48, 1 << 30), None);
        assert_eq!(gvisor.pids_limit_past_memory(256, 1 << 20), Some(1));
        assert_eq!(
            Runtime::default().pids_limit_past_memory(256, 1 << 30),
            None
        );
    }

    #[test]
    fn under_gvisor_the_supervisor_copies_the_output_out() {
        let job = JobId::new();
        let steps = steps();
        let cmd = container_config(&gvisor_sandbox(), &run(job, &steps[1]))
            .cmd
            .unwrap();
        assert_eq!(cmd[..3], ["python3", "-I", "-c"]);
        assert_eq!(cmd[5..], ["--relay", "python3", "-m", "pytest", "-v"]);
        let runc = container_config(&sandbox(), &run(job, &steps[1]))
            .cmd
            .unwrap();
        assert_eq!(runc[5], "python3", "no relay with runc");
    }
}
