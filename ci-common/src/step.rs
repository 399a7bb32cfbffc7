//! Steps: a job runs a task, and a task is an ordered list of steps. A step is one named
//! container run — image, command, network, environment, timeout — with a rule for what its exit
//! code means and whether its failure stops the job. The built-in `test` task has up to two
//! steps, `install` and `test` ([`test_task`]); every step, whatever it does, is started,
//! followed, reattached, cancelled, timed out and recorded the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::api::Outcome;
use crate::project::{
    install_notice, pytest_command, ConfigError, Install, Installer, Project, RootFiles,
};
use crate::JobStatus;

/// Whether a step's container has the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The operator's install network (`--install-network`, `bridge` by default).
    Online,
    /// The operator's test network (`--test-network`, `none` by default: loopback only).
    Offline,
    /// The operator's git network (`--git-network`, `bridge` by default): the fetch step of a
    /// job from git. Projects cannot ask for it ([`TaskNetwork`]).
    Git,
}

/// The networks a project's task may ask for (`network` under `[tool.ci.tasks.NAME]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskNetwork {
    Online,
    Offline,
}

impl From<TaskNetwork> for Network {
    fn from(network: TaskNetwork) -> Self {
        match network {
            TaskNetwork::Online => Network::Online,
            TaskNetwork::Offline => Network::Offline,
        }
    }
}

/// What a step's exit code means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ExitRule {
    /// pytest's codes: 0 passed, 1 tests failed, 2–5 an error of the run (see [`pytest_exit`]).
    Pytest,
    /// 0 passes; anything else fails the step, and the job ends with `failure` (when the step
    /// stops the job) and the reason "`TITLE` failed: step NAME exited N".
    Zero { failure: JobStatus },
}

/// Everything about one step a controller needs to run it, stored with the step so that a
/// restarted controller continues exactly the plan the job started with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Unique within the job: lower-case letters, digits, `-` and `_` (it names the container).
    pub name: String,
    /// What the step does, for people: `pip install`, `pytest`.
    pub title: String,
    /// What the job says when the step starts (`installing requirements.txt`, `running tests: ...`).
    pub notice: String,
    pub image: String,
    /// The command, as an argument vector (no shell).
    pub command: Vec<String>,
    pub network: Network,
    /// Extra environment variables (`KEY=VALUE`), after the job's own.
    #[serde(default)]
    pub env: Vec<String>,
    /// A limit of its own, in seconds, within the job's timeout.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    pub exit: ExitRule,
    /// Whether a failure of this step ends the job (otherwise the next step runs).
    pub stops_job: bool,
    /// Which run of the tests this is: 1, then 2, 3, ... for the retries of failed tests. The
    /// step's processes read it as `CI_ATTEMPT`; its test results are stored under it.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The pytest node ids a retry runs (of the tests its command selects, only these); empty
    /// runs them all. Given to ci's pytest plugin as `CI_RERUN`, one per line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rerun: Vec<String>,
    /// The dependency cache volume the step mounts where installed packages live, if it uses
    /// one (see [`StepCache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<StepCache>,
    /// The job owner's pip download and wheel cache (a Docker volume) an install step mounts
    /// read-write, so that a changed requirements file fetches only what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pip_cache: Option<String>,
    /// Globs of files (relative to the project folder) kept as the job's artifacts when the step
    /// passes (see [`crate::tasks::artifact_matcher`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// The folder, relative to the workspace, where this step's installed packages live
    /// instead of the job's (`deps`): a task in another image installs its own there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps_dir: Option<String>,
    /// Names of the secret variables the step gets as environment variables (its task's
    /// `secrets`): the controller opens their values when it creates the container; they are
    /// never part of the stored plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// How a step uses a dependency cache entry: the install step of a miss writes the packages
/// into a new entry's volume (published when the step passes); the test steps mount the entry
/// read-only, so tests cannot change what a later job gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCache {
    /// The Docker volume of the entry.
    pub volume: String,
    /// Whether the step writes (fills) the entry.
    pub write: bool,
    /// The entry's key (short form), for notices.
    pub key: String,
}

fn first_attempt() -> u32 {
    1
}

/// Where ci's own files are mounted (read-only) in every step: the pytest plugin that records
/// results and the install step's driver.
pub const PLUGINS_DIR: &str = "/opt/ci/plugins";
/// The install step's driver in [`PLUGINS_DIR`]: installs with uv or pip into a virtual
/// environment the test steps use (see `ci-controller/src/ci_install.py`).
pub const INSTALL_DRIVER: &str = "ci_install.py";

/// The name of the built-in `test` task's install step.
pub const INSTALL_STEP: &str = "install";

/// Most bytes of node ids one retry runs (they travel in one environment variable, and Linux
/// caps one at 128 KiB).
pub const RERUN_MAX_BYTES: usize = 64 * 1024;

/// How many node ids a retry's notice names before "and N more".
const RERUN_NAMED: usize = 5;

impl StepSpec {
    /// The step that runs the `failed` tests (pytest node ids) of this pytest step again, as its
    /// next attempt, out of `attempts` in all: the same image, command and environment, named
    /// `retry-1`, `retry-2`, ...
    ///
    /// # Errors
    ///
    /// The notice when there is nothing to run again or too much (more than
    /// [`RERUN_MAX_BYTES`] of node ids).
    pub fn retry(&self, failed: &[String], attempts: u32) -> Result<StepSpec, String> {
        if failed.is_empty() {
            return Err("the tests failed, but no failed test was reported: not retrying".into());
        }
        let bytes: usize = failed.iter().map(|id| id.len() + 1).sum();
        if bytes > RERUN_MAX_BYTES {
            return Err(format!(
                "{} tests failed, too many to run again ({} KiB of test ids, more than {} KiB): not retrying",
                failed.len(),
                bytes / 1024,
                RERUN_MAX_BYTES / 1024
            ));
        }
        let attempt = self.attempt + 1;
        let mut named = failed
            .iter()
            .take(RERUN_NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if failed.len() > RERUN_NAMED {
            named.push_str(&format!(" and {} more", failed.len() - RERUN_NAMED));
        }
        Ok(StepSpec {
            name: format!("retry-{}", attempt - 1),
            title: format!("pytest (attempt {attempt})"),
            notice: format!(
                "attempt {attempt} of {attempts}: running {} failed test{} again: {named}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" }
            ),
            attempt,
            rerun: failed.to_vec(),
            ..self.clone()
        })
    }
}

/// Why a step name cannot be used.
pub fn check_step_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid step name {name:?}: use 1 to 40 lower-case letters, digits, `-` or `_`"
        ))
    }
}

/// The state of one step: `pending → running → passed | failed | error | timed_out |
/// cancelled | lost`, or `pending → skipped` when an earlier step ended the job. Terminal states
/// never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StepState {
    Pending,
    Running,
    Passed,
    Failed,
    Error,
    TimedOut,
    Cancelled,
    Lost,
    Skipped,
}

impl StepState {
    pub const ALL: [StepState; 9] = [
        StepState::Pending,
        StepState::Running,
        StepState::Passed,
        StepState::Failed,
        StepState::Error,
        StepState::TimedOut,
        StepState::Cancelled,
        StepState::Lost,
        StepState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Passed => "passed",
            StepState::Failed => "failed",
            StepState::Error => "error",
            StepState::TimedOut => "timed_out",
            StepState::Cancelled => "cancelled",
            StepState::Lost => "lost",
            StepState::Skipped => "skipped",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, StepState::Pending | StepState::Running)
    }

    /// The one rule for step transitions (see the type's documentation).
    pub fn can_become(self, next: StepState) -> bool {
        match self {
            StepState::Pending => matches!(
                next,
                StepState::Running
                    | StepState::Skipped
                    | StepState::Cancelled
                    | StepState::TimedOut
                    | StepState::Lost
            ),
            StepState::Running => next.is_terminal() && next != StepState::Skipped,
            _ => false,
        }
    }

    /// The state a step ends in when its job ends with `status` while the step was not done.
    pub fn of_job_end(status: JobStatus) -> StepState {
        match status {
            JobStatus::Cancelled => StepState::Cancelled,
            JobStatus::TimedOut => StepState::TimedOut,
            JobStatus::Lost => StepState::Lost,
            JobStatus::Passed => StepState::Passed,
            JobStatus::Failed => StepState::Failed,
            JobStatus::Queued | JobStatus::Running | JobStatus::Error => StepState::Error,
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown step state {s:?}"))
    }
}

/// The outcome of pytest's exit code (0 passed, 1 failed, 2–5 an error of the run).
pub fn pytest_exit(code: i64) -> Outcome {
    let (status, reason) = match code {
        0 => (JobStatus::Passed, None),
        1 => (JobStatus::Failed, Some("some tests failed (pytest exit 1)".to_owned())),
        2 => (JobStatus::Error, Some("pytest exit 2: collecting the tests failed (an import error such as a module that is not installed, or a syntax error: see the log) or the run was interrupted".to_owned())),
        3 => (JobStatus::Error, Some("pytest exit 3: internal error in pytest".to_owned())),
        4 => (JobStatus::Error, Some("pytest exit 4: pytest command line usage error".to_owned())),
        5 => (JobStatus::Error, Some("pytest exit 5: no tests were collected".to_owned())),
        137 => (JobStatus::Error, Some("the tests were killed with SIGKILL (exit 137)".to_owned())),
        other => (JobStatus::Error, Some(format!("the tests ended with exit code {other}"))),
    };
    let mut outcome = Outcome::new(status).with_exit_code(code);
    outcome.reason = reason;
    outcome
}

impl StepSpec {
    /// What a finished step's exit code means: the step's state, and the job's outcome if the
    /// step decides it (a failure of a step that stops the job, or the last step's result).
    pub fn exit_outcome(&self, code: i64) -> (StepState, Outcome) {
        match self.exit {
            ExitRule::Pytest => {
                let outcome = pytest_exit(code);
                let state = match outcome.status {
                    JobStatus::Passed => StepState::Passed,
                    JobStatus::Failed => StepState::Failed,
                    _ => StepState::Error,
                };
                (state, outcome)
            }
            ExitRule::Zero { failure } => {
                if code == 0 {
                    (
                        StepState::Passed,
                        Outcome::new(JobStatus::Passed).with_exit_code(0),
                    )
                } else {
                    let outcome = Outcome::new(failure)
                        .with_reason(format!(
                            "{} failed: step {} exited {code}",
                            self.title, self.name
                        ))
                        .with_exit_code(code);
                    (StepState::Failed, outcome)
                }
            }
        }
    }
}

/// The install step of a job: [`INSTALL_DRIVER`] with `installer` installing `install` into the
/// job's environment, online; a failure ends the job as `error`. `notice` is what the job says
/// when it starts (default: what is installed).
pub fn install_step(
    image: &str,
    install: &Install,
    installer: Installer,
    notice: Option<String>,
) -> StepSpec {
    StepSpec {
        name: INSTALL_STEP.into(),
        title: "pip install".into(),
        notice: notice.unwrap_or_else(|| format!("installing {}", install.describe())),
        image: image.to_owned(),
        command: [
            "python3".to_owned(),
            format!("{PLUGINS_DIR}/{INSTALL_DRIVER}"),
            installer.as_str().to_owned(),
        ]
        .into_iter()
        .chain(install.pip_args())
        .collect(),
        network: Network::Online,
        env: Vec::new(),
        timeout_secs: None,
        exit: ExitRule::Zero {
            failure: JobStatus::Error,
        },
        stops_job: true,
        attempt: 1,
        rerun: Vec::new(),
        cache: None,
        pip_cache: None,
        artifacts: Vec::new(),
        deps_dir: None,
        secrets: Vec::new(),
    }
}

/// The steps of the built-in `test` task, from the project's root files, the job's image, its
/// extra pytest arguments and the operator's installer: `install` (online; only when there is
/// something to install, see [`Install`]; with [`INSTALL_DRIVER`] and the installer of
/// [`Installer::choose`]) then `test` (offline). Also returns the notice of a skipped install
/// step.
///
/// # Errors
///
/// A broken `pyproject.toml` (see [`Project::read`]).
pub fn test_task(
    root: &RootFiles,
    image: &str,
    pytest_args: &[String],
    installer: Installer,
) -> Result<(Vec<StepSpec>, Option<String>), ConfigError> {
    let project = Project::read(root)?;
    Ok(test_steps(&project, root, image, pytest_args, installer))
}

/// [`test_task`] of a project already read from `root`.
pub fn test_steps(
    project: &Project,
    root: &RootFiles,
    image: &str,
    pytest_args: &[String],
    installer: Installer,
) -> (Vec<StepSpec>, Option<String>) {
    let install = Install::plan(root);
    let notice = install_notice(root, &install);
    let mut steps = Vec::new();
    let mut skipped = None;
    if install == Install::Nothing {
        skipped = Some(notice);
    } else {
        steps.push(install_step(
            image,
            &install,
            Installer::choose(installer, project.ci.installer),
            Some(notice),
        ));
    }
    let command = pytest_command(project.pytest.as_ref(), pytest_args);
    steps.push(StepSpec {
        name: "test".into(),
        title: "pytest".into(),
        notice: format!(
            "running tests: {}",
            shlex::try_join(command.iter().map(String::as_str))
                .unwrap_or_else(|_| command.join(" "))
        ),
        image: image.to_owned(),
        command,
        network: Network::Offline,
        env: Vec::new(),
        timeout_secs: None,
        exit: ExitRule::Pytest,
        stops_job: true,
        attempt: 1,
        rerun: Vec::new(),
        cache: None,
        pip_cache: None,
        artifacts: Vec::new(),
        deps_dir: None,
        secrets: Vec::new(),
    });
    (steps, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_states_follow_one_rule() {
        for from in StepState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in StepState::ALL {
                assert!(!from.can_become(to), "{from} must not become {to}");
            }
        }
        assert!(StepState::Pending.can_become(StepState::Running));
        assert!(StepState::Pending.can_become(StepState::Skipped));
        assert!(!StepState::Running.can_become(StepState::Skipped));
        assert!(!StepState::Running.can_become(StepState::Pending));
        assert!(StepState::Running.can_become(StepState::Lost));
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>().unwrap(), state);
        }
    }

    #[test]
    fn the_test_task_has_an_install_step_only_when_there_is_something_to_install() {
        let root = RootFiles::from_pairs([("requirements.txt", &b"six\n"[..])]);
        let (steps, skipped) =
            test_task(&root, "img", &["-k".into(), "x y".into()], Installer::Auto).unwrap();
        assert_eq!(skipped, None);
        let names: Vec<_> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["install", "test"]);
        assert_eq!(steps[0].network, Network::Online);
        assert_eq!(steps[0].notice, "installing requirements.txt");
        assert_eq!(steps[1].network, Network::Offline);
        assert_eq!(
            steps[1].notice,
            "running tests: python3 -m pytest -v -k 'x y'"
        );
        assert!(steps
            .iter()
            .all(|s| s.image == "img" && check_step_name(&s.name).is_ok()));

        let (steps, skipped) =
            test_task(&RootFiles::default(), "img", &[], Installer::Auto).unwrap();
        assert_eq!(steps.len(), 1);
        assert!(skipped.unwrap().contains("skipping the install step"));
    }

    #[test]
    fn exit_codes_mean_what_the_rule_says() {
        let root = RootFiles::from_pairs([("requirements.txt", &b""[..])]);
        let (steps, _) = test_task(&root, "img", &[], Installer::Auto).unwrap();
        let (state, outcome) = steps[0].exit_outcome(1);
        assert_eq!(state, StepState::Failed);
        assert_eq!(outcome.status, JobStatus::Error);
        assert_eq!(
            outcome.reason.as_deref(),
            Some("pip install failed: step install exited 1")
        );
        assert_eq!(steps[0].exit_outcome(0).0, StepState::Passed);
        let (state, outcome) = steps[1].exit_outcome(1);
        assert_eq!(
            (state, outcome.status),
            (StepState::Failed, JobStatus::Failed)
        );
        let (state, outcome) = steps[1].exit_outcome(5);
        assert_eq!(
            (state, outcome.status),
            (StepState::Error, JobStatus::Error)
        );
        assert!(outcome.reason.unwrap().contains("no tests were collected"));
    }

    #[test]
    fn a_retry_runs_the_failed_tests_again_as_the_next_attempt() {
        let (steps, _) = test_task(
            &RootFiles::default(),
            "img",
            &["-x".into()],
            Installer::Auto,
        )
        .unwrap();
        let test = &steps[0];
        let failed: Vec<String> = (0..7).map(|i| format!("t.py::test_{i}")).collect();
        let retry = test.retry(&failed, 3).unwrap();
        assert_eq!(retry.name, "retry-1");
        assert_eq!(retry.attempt, 2);
        assert_eq!(retry.command, test.command);
        assert_eq!(retry.rerun, failed);
        assert_eq!(
            retry.notice,
            "attempt 2 of 3: running 7 failed tests again: t.py::test_0, t.py::test_1, \
             t.py::test_2, t.py::test_3, t.py::test_4 and 2 more"
        );
        let again = retry.retry(&failed[..1], 3).unwrap();
        assert_eq!((again.name.as_str(), again.attempt), ("retry-2", 3));
        assert!(check_step_name(&again.name).is_ok());
        assert!(test.retry(&[], 2).is_err());
        let huge = vec!["t.py::test_".to_owned() + &"x".repeat(1000); 100];
        assert!(test.retry(&huge, 2).unwrap_err().contains("too many"));
        // A plan stored before attempts existed reads as the first attempt.
        let mut json: serde_json::Value = serde_json::to_value(test).unwrap();
        json.as_object_mut().unwrap().remove("attempt");
        let old: StepSpec = serde_json::from_value(json).unwrap();
        assert_eq!((old.attempt, old.rerun.len()), (1, 0));
    }

    #[test]
    fn step_names_name_containers() {
        assert!(check_step_name("install").is_ok());
        assert!(check_step_name("lint-2_x").is_ok());
        for bad in ["", "Install", "a b", "a/b", &"x".repeat(41)] {
            assert!(check_step_name(bad).is_err(), "{bad}");
        }
    }
}
