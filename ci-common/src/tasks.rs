//! Named tasks a project defines under `[tool.ci.tasks.<name>]` in `pyproject.toml`, and the
//! plan of steps a job of one of them runs: the tasks it `needs` first, in order (a pipeline is
//! a task with needs), each task once, then the task itself; with one install step first when
//! the job installs anything, and one more before each task in another image (into a folder of
//! its own). `test` is built in (install, then pytest) and a project can
//! override it.
//!
//! ```toml
//! [tool.ci.tasks.lint]
//! run = "python3 -m pyflakes src"
//!
//! [tool.ci.tasks.build]
//! needs = ["lint", "test"]
//! run = ["python3 -m build --wheel --no-isolation", "ls dist"]
//! timeout = "10m"
//! env = { SOURCE_DATE_EPOCH = "0" }
//!
//! [tool.ci.tasks.deploy]
//! run = 'echo "deploying $1 at version $2"'
//! install = false
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api::DEFAULT_TASK;
use crate::config::parse_duration;
use crate::project::{ConfigError, Install, Installer, Project, RootFiles};
use crate::step::{
    check_step_name, test_steps, ExitRule, Network, StepSpec, TaskNetwork, INSTALL_STEP,
};
use crate::JobStatus;

/// One task under `[tool.ci.tasks.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Shell commands (`sh -e`), one string or a list; the job's parameters are `"$@"` and
    /// `CI_ARGS`. Required but for `test`, whose default is pytest.
    pub run: Option<Commands>,
    /// The image (one the operator allows); default: the job's.
    pub image: Option<String>,
    /// What the job installs first: a requirements file, or `false` for nothing; default: what
    /// the built-in `test` installs. Only the submitted task's setting counts.
    pub install: Option<InstallSetting>,
    /// A limit of the task's own, within the job's: `"5m"`, `"90s"` or seconds.
    pub timeout: Option<Timeout>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `"offline"` (the default: the operator's test network) or `"online"` (the operator's
    /// install network).
    pub network: Option<TaskNetwork>,
    /// Tasks that run first, in this order (each once per job).
    #[serde(default)]
    pub needs: Vec<String>,
    /// Files kept as the job's artifacts when the task passes: globs relative to the project
    /// folder (`dist/*.whl`, `coverage.xml`, `reports/**/*.xml`).
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// `1`: at most one running job of this task per user and project; later ones wait in the
    /// queue (never dropped). No value: no limit.
    pub concurrency: Option<u32>,
    /// Names of secret variables (`ci secrets set NAME`) the task's steps get as environment
    /// variables: the submitter's for a personal job, the team's for a team's job. Masked in
    /// the log.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// The key jobs of `task` share when the task runs one at a time (`concurrency = 1`): the
/// project's name and the task's.
pub fn concurrency_key(
    project: &Project,
    task: &str,
    project_name: Option<&str>,
) -> Option<String> {
    let one_at_a_time = project
        .ci
        .tasks
        .get(task)
        .and_then(|t| t.concurrency)
        .is_some_and(|n| n == 1);
    one_at_a_time.then(|| format!("{}:{task}", project_name.unwrap_or("")))
}

/// The blob store's names of a job's artifacts: `artifacts/<path in the project>`.
pub const ARTIFACTS_PREFIX: &str = "artifacts/";

/// Most files one step keeps as artifacts; more are named in a notice and left out.
pub const MAX_ARTIFACT_FILES: usize = 100;
/// Most bytes of artifacts one step keeps; files past it are named in a notice and left out.
pub const MAX_ARTIFACT_BYTES: u64 = 100 << 20;

/// A matcher of project paths (`dist/pkg.whl`) against a task's artifact globs (`*` stays
/// within a folder, `**` crosses folders; the globset crate's syntax).
///
/// # Errors
///
/// A glob that does not parse, or one that is absolute or leaves the project.
pub fn artifact_matcher(globs: &[String]) -> Result<globset::GlobSet, String> {
    let mut set = globset::GlobSetBuilder::new();
    for glob in globs {
        if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
            return Err(format!(
                "artifact {glob:?} is not inside the project: give a path relative to the project \
                 folder, e.g. dist/*.whl"
            ));
        }
        let glob = glob.trim_start_matches("./");
        set.add(
            globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("artifact {glob:?}: {e}"))?,
        );
    }
    set.build().map_err(|e| e.to_string())
}

/// `run`: one command string or a list of them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Commands {
    /// The commands as one shell script, a line each.
    pub fn script(&self) -> String {
        match self {
            Commands::One(text) => text.clone(),
            Commands::Many(lines) => lines.join("\n"),
        }
    }
}

/// `install`: a requirements file, or `false`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum InstallSetting {
    File(String),
    Enabled(bool),
}

/// `timeout`: `"5m"` or a number of seconds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Timeout {
    Seconds(u64),
    Text(String),
}

impl Timeout {
    fn seconds(&self) -> Result<u64, String> {
        match self {
            Timeout::Seconds(n) => Ok(*n),
            Timeout::Text(text) => parse_duration(text).map(|d| d.as_secs().max(1)),
        }
    }
}

/// Checks the `tasks` of `[tool.ci]`: names, commands, needs (existing, without cycles),
/// timeouts and environment names.
///
/// # Errors
///
/// The message for the user, naming the task and what to change.
pub fn check_tasks(tasks: &BTreeMap<String, TaskConfig>) -> Result<(), String> {
    for (name, task) in tasks {
        check_step_name(name).map_err(|e| format!("task {name:?}: {e}"))?;
        if name == INSTALL_STEP || name.starts_with("retry-") {
            return Err(format!(
                "task {name:?}: the name is the job's own (its install step or a retry of failed \
                 tests); choose another"
            ));
        }
        let script = task.run.as_ref().map(Commands::script).unwrap_or_default();
        if name != DEFAULT_TASK && script.trim().is_empty() {
            return Err(format!(
                "task {name:?} has no commands: give them with `run = \"...\"`"
            ));
        }
        for need in &task.needs {
            if need != DEFAULT_TASK && !tasks.contains_key(need) {
                return Err(format!(
                    "task {name:?} needs {need:?}, which is not a task: the tasks are {}",
                    task_names(tasks).join(", ")
                ));
            }
        }
        if let Some(timeout) = &task.timeout {
            timeout
                .seconds()
                .map_err(|e| format!("task {name:?}: timeout {e}"))?;
        }
        if let Some(InstallSetting::Enabled(true)) = task.install {
            return Err(format!(
                "task {name:?}: `install` is a requirements file or false (true is the default)"
            ));
        }
        artifact_matcher(&task.artifacts).map_err(|e| format!("task {name:?}: {e}"))?;
        if task.concurrency.is_some_and(|n| n != 1) {
            return Err(format!(
                "task {name:?}: `concurrency` can be 1 (one running job of the task at a time per \
                 user and project) or left out (no limit)"
            ));
        }
        for secret in &task.secrets {
            crate::secrets::check_variable_name(secret)
                .map_err(|e| format!("task {name:?}: `secrets`: {e}"))?;
            if task.env.contains_key(secret) {
                return Err(format!(
                    "task {name:?}: {secret:?} is both in `env` and in `secrets`; keep one"
                ));
            }
        }
        for key in task.env.keys() {
            let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "task {name:?}: {key:?} is not an environment variable name (letters, digits \
                     and `_`)"
                ));
            }
        }
        pipeline(tasks, name)?;
    }
    Ok(())
}

/// Every task a project has: the built-in `test` and its own, sorted.
pub fn task_names(tasks: &BTreeMap<String, TaskConfig>) -> Vec<String> {
    let mut names: Vec<String> = tasks.keys().cloned().collect();
    if !tasks.contains_key(DEFAULT_TASK) {
        names.push(DEFAULT_TASK.to_owned());
    }
    names.sort();
    names
}

/// Checks that the project has `task` (the server refuses an upload of another, the controller
/// a job of one).
///
/// # Errors
///
/// The message for the user, listing the project's tasks.
pub fn check_task(project: &Project, task: &str) -> Result<(), String> {
    if task == DEFAULT_TASK || project.ci.tasks.contains_key(task) {
        Ok(())
    } else {
        Err(format!(
            "unknown task {task:?}: this project's tasks are {} (define others under \
             [tool.ci.tasks.<name>] in pyproject.toml; `ci tasks` lists them)",
            task_names(&project.ci.tasks).join(", ")
        ))
    }
}

/// Whether a job of `task` runs the built-in pytest step (`test` without its own `run`, itself
/// or as a need); an unknown task or a cycle counts as yes (the job is refused anyway).
pub fn runs_pytest(project: &Project, task: &str) -> bool {
    let tasks = &project.ci.tasks;
    pipeline(tasks, task).map_or(true, |order| {
        order
            .iter()
            .any(|t| t == DEFAULT_TASK && tasks.get(t).and_then(|c| c.run.as_ref()).is_none())
    })
}

/// The tasks a job of `task` runs, in order: what it needs first (depth first, each once),
/// then itself.
///
/// # Errors
///
/// The needs form a cycle (the message names it).
pub fn pipeline(tasks: &BTreeMap<String, TaskConfig>, task: &str) -> Result<Vec<String>, String> {
    fn visit(
        tasks: &BTreeMap<String, TaskConfig>,
        task: &str,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.iter().any(|d| d == task) {
            return Ok(());
        }
        if path.iter().any(|p| p == task) {
            path.push(task.to_owned());
            return Err(format!(
                "the tasks' needs form a cycle: {}; remove one of them",
                path.join(" → ")
            ));
        }
        path.push(task.to_owned());
        for need in tasks.get(task).map(|t| t.needs.as_slice()).unwrap_or(&[]) {
            visit(tasks, need, path, done)?;
        }
        path.pop();
        done.push(task.to_owned());
        Ok(())
    }
    let mut done = Vec::new();
    visit(tasks, task, &mut Vec::new(), &mut done)?;
    Ok(done)
}

/// The steps of a job of `task` (see the module's documentation), in `image` unless a task
/// names its own, with the job's `args` (pytest's for the built-in `test`, the parameters of
/// any other task) and the operator's installer. Also returns the notice of a skipped install.
///
/// # Errors
///
/// A broken `pyproject.toml`, or a task the project does not have.
pub fn plan_task(
    root: &RootFiles,
    task: &str,
    image: &str,
    args: &[String],
    installer: Installer,
) -> Result<(Vec<StepSpec>, Option<String>), ConfigError> {
    let project = Project::read(root)?;
    check_task(&project, task).map_err(ConfigError::Schema)?;
    let tasks = &project.ci.tasks;
    // The built-in test task, as it always was.
    let (built_in, skipped) = test_steps(
        &project,
        root,
        image,
        if task == DEFAULT_TASK { args } else { &[] },
        installer,
    );
    let order = pipeline(tasks, task).map_err(ConfigError::Schema)?;
    if order == [DEFAULT_TASK] && !tasks.contains_key(DEFAULT_TASK) {
        return Ok((built_in, skipped));
    }
    let mut steps: Vec<StepSpec> = Vec::new();
    let mut skipped = skipped;
    // The job's install: the submitted task's setting, else the built-in one.
    match tasks.get(task).and_then(|t| t.install.as_ref()) {
        Some(InstallSetting::Enabled(false)) => {
            skipped = Some(format!(
                "task {task:?} installs nothing (install = false): skipping the install step"
            ));
        }
        Some(InstallSetting::File(file)) => {
            steps.push(crate::step::install_step(
                image,
                &Install::Requirements(vec![file.clone()]),
                Installer::choose(installer, project.ci.installer),
                None,
            ));
            skipped = None;
        }
        _ => steps.extend(built_in.iter().filter(|s| s.name == INSTALL_STEP).cloned()),
    }
    for name in &order {
        let config = tasks.get(name);
        let is_target = name == task;
        match config.and_then(|c| c.run.as_ref()) {
            None => {
                // The built-in test (`test` without `run`), with the secrets `[tool.ci.tasks.test]`
                // lists.
                let secrets = config.map(|c| c.secrets.clone()).unwrap_or_default();
                steps.extend(
                    built_in
                        .iter()
                        .filter(|s| s.name != INSTALL_STEP)
                        .cloned()
                        .map(|s| StepSpec {
                            secrets: secrets.clone(),
                            ..s
                        }),
                );
            }
            Some(run) => {
                let config = config.expect("a task with run is configured");
                let task_image = config.image.clone().unwrap_or_else(|| image.to_owned());
                // A task in another image gets its own install of the job's requirements, in
                // that image, into a folder of its own.
                let job_install = steps.iter().find(|s| s.name == INSTALL_STEP).cloned();
                let deps_dir = match job_install {
                    Some(install) if task_image != image => {
                        let dir = format!("deps-{name}");
                        let what = install
                            .notice
                            .strip_prefix("installing ")
                            .unwrap_or(&install.notice)
                            .to_owned();
                        steps.push(StepSpec {
                            name: format!("{INSTALL_STEP}-{name}"),
                            notice: format!(
                                "installing {what} for task {name} (image {task_image})"
                            ),
                            image: task_image.clone(),
                            deps_dir: Some(dir.clone()),
                            ..install
                        });
                        Some(dir)
                    }
                    _ => None,
                };
                let script = run.script();
                let params: &[String] = if is_target { args } else { &[] };
                let mut env: Vec<String> =
                    config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                env.push(format!(
                    "CI_ARGS={}",
                    shlex::try_join(params.iter().map(String::as_str))
                        .unwrap_or_else(|_| params.join(" "))
                ));
                let first = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                steps.push(StepSpec {
                    name: name.clone(),
                    title: format!("task {name}"),
                    notice: format!("running task {name}: {}", first.trim()),
                    image: task_image,
                    command: ["sh", "-e", "-c", &script, name]
                        .iter()
                        .map(|s| s.to_string())
                        .chain(params.iter().cloned())
                        .collect(),
                    network: config.network.map_or(Network::Offline, Network::from),
                    env,
                    timeout_secs: config
                        .timeout
                        .as_ref()
                        .map(|t| t.seconds())
                        .transpose()
                        .map_err(ConfigError::Schema)?,
                    exit: ExitRule::Zero {
                        failure: JobStatus::Failed,
                    },
                    stops_job: true,
                    attempt: 1,
                    rerun: Vec::new(),
                    cache: None,
                    pip_cache: None,
                    artifacts: config.artifacts.clone(),
                    deps_dir,
                    secrets: config.secrets.clone(),
                });
            }
        }
    }
    Ok((steps, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(pyproject: &str) -> RootFiles {
        RootFiles::from_pairs([
            ("pyproject.toml", pyproject.as_bytes()),
            ("requirements.txt", &b"six\n"[..]),
        ])
    }

    const PIPELINE: &str = r#"
[tool.ci.tasks.lint]
run = "python3 -m pyflakes src"

[tool.ci.tasks.build]
needs = ["lint", "test"]
run = ["python3 -m build --wheel", "ls dist"]
timeout = "10m"
env = { SOURCE_DATE_EPOCH = "0" }

[tool.ci.tasks.deploy]
needs = ["build"]
run = 'echo "deploying $1 at $2"'
install = false
network = "online"
"#;

    fn names(steps: &[StepSpec]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_pipeline_runs_what_it_needs_first_each_once_after_one_install() {
        let (steps, skipped) =
            plan_task(&root(PIPELINE), "build", "img", &[], Installer::Auto).unwrap();
        assert_eq!(names(&steps), ["install", "lint", "test", "build"]);
        assert_eq!(skipped, None);
        let build = &steps[3];
        assert_eq!(
            build.command,
            [
                "sh",
                "-e",
                "-c",
                "python3 -m build --wheel\nls dist",
                "build"
            ]
        );
        assert_eq!(build.timeout_secs, Some(600));
        assert!(build.env.contains(&"SOURCE_DATE_EPOCH=0".to_owned()));
        assert_eq!(build.notice, "running task build: python3 -m build --wheel");
        assert_eq!(steps[2].exit, ExitRule::Pytest, "the built-in test");
        assert!(steps.iter().all(|s| s.stops_job));

        let args = ["staging".to_owned(), "v 2".to_owned()];
        let (steps, skipped) =
            plan_task(&root(PIPELINE), "deploy", "img", &args, Installer::Auto).unwrap();
        assert_eq!(names(&steps), ["lint", "test", "build", "deploy"]);
        assert!(skipped.unwrap().contains("install = false"));
        let deploy = steps.last().unwrap();
        assert_eq!(&deploy.command[4..], ["deploy", "staging", "v 2"]);
        assert!(deploy.env.contains(&"CI_ARGS=staging 'v 2'".to_owned()));
        assert_eq!(deploy.network, Network::Online);
        assert!(
            steps[1].command.iter().all(|a| a != "staging"),
            "parameters are the submitted task's"
        );
        // The built-in test alone is as it always was, with pytest's arguments.
        let (steps, _) = plan_task(
            &root(PIPELINE),
            "test",
            "img",
            &["-k".into(), "x".into()],
            Installer::Auto,
        )
        .unwrap();
        assert_eq!(names(&steps), ["install", "test"]);
        assert!(steps[1]
            .command
            .ends_with(&["-k".to_owned(), "x".to_owned()]));
    }

    #[test]
    fn artifact_globs_match_paths_in_the_project() {
        let set = artifact_matcher(&[
            "dist/*.whl".into(),
            "./coverage.xml".into(),
            "reports/**/*.xml".into(),
        ])
        .unwrap();
        for yes in [
            "dist/pipe-0.1-py3-none-any.whl",
            "coverage.xml",
            "reports/a/b/junit.xml",
            "reports/x.xml",
        ] {
            assert!(set.is_match(yes), "{yes}");
        }
        for no in ["dist/sub/x.whl", "src/coverage.xml", "dist/x.tar.gz"] {
            assert!(!set.is_match(no), "{no}");
        }
        let (steps, _) = plan_task(
            &root("[tool.ci.tasks.build]\nrun = \"make\"\nartifacts = [\"dist/*.whl\"]\n"),
            "build",
            "img",
            &[],
            Installer::Auto,
        )
        .unwrap();
        assert_eq!(steps.last().unwrap().artifacts, ["dist/*.whl"]);
    }

    #[test]
    fn only_jobs_with_the_built_in_test_run_pytest() {
        let project = Project::read(&root(PIPELINE)).unwrap();
        assert!(runs_pytest(&project, "test"));
        assert!(runs_pytest(&project, "build"), "build needs test");
        assert!(!runs_pytest(&project, "lint"));
        let overridden =
            Project::read(&root("[tool.ci.tasks.test]\nrun = \"make check\"\n")).unwrap();
        assert!(!runs_pytest(&overridden, "test"));
    }

    #[test]
    fn a_task_in_another_image_installs_the_requirements_in_it_into_its_own_folder() {
        let pyproject = "[tool.ci.tasks.compat]\nimage = \"python:3.9\"\nrun = \"python3 -m pytest\"\n[tool.ci.tasks.all]\nneeds = [\"test\", \"compat\"]\nrun = \"true\"\n";
        let (steps, _) = plan_task(&root(pyproject), "all", "img", &[], Installer::Auto).unwrap();
        assert_eq!(
            names(&steps),
            ["install", "test", "install-compat", "compat", "all"]
        );
        let own = &steps[2];
        assert_eq!(
            (own.image.as_str(), own.deps_dir.as_deref()),
            ("python:3.9", Some("deps-compat"))
        );
        assert_eq!(
            own.command, steps[0].command,
            "the same requirements and installer"
        );
        assert_eq!(
            own.notice,
            "installing requirements.txt for task compat (image python:3.9)"
        );
        assert_eq!(steps[3].deps_dir.as_deref(), Some("deps-compat"));
        assert_eq!(
            steps[4].deps_dir, None,
            "the job's image uses the job's install"
        );
    }

    #[test]
    fn a_task_can_install_its_own_requirements_file() {
        let pyproject =
            "[tool.ci.tasks.docs]\nrun = \"make html\"\ninstall = \"docs/requirements.txt\"\n";
        let (steps, _) = plan_task(&root(pyproject), "docs", "img", &[], Installer::Pip).unwrap();
        assert_eq!(names(&steps), ["install", "docs"]);
        assert!(steps[0].command.ends_with(&[
            "pip".to_owned(),
            "-r".to_owned(),
            "docs/requirements.txt".to_owned()
        ]));
        assert_eq!(steps[0].notice, "installing docs/requirements.txt");
    }

    #[test]
    fn unknown_tasks_cycles_and_bad_settings_are_refused_with_what_to_change() {
        let err = plan_task(&root(PIPELINE), "release", "img", &[], Installer::Auto).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"release\"") && text.contains("build, deploy, lint, test"),
            "{text}"
        );
        for (bad, says) in [
            ("[tool.ci.tasks.a]\nrun = \"x\"\nneeds = [\"b\"]\n[tool.ci.tasks.b]\nrun = \"y\"\nneeds = [\"a\"]\n", "cycle: a → b → a"),
            ("[tool.ci.tasks.a]\nneeds = [\"nope\"]\nrun = \"x\"\n", "not a task"),
            ("[tool.ci.tasks.a]\nenv = {}\n", "no commands"),
            ("[tool.ci.tasks.Build]\nrun = \"x\"\n", "invalid step name"),
            ("[tool.ci.tasks.install]\nrun = \"x\"\n", "install step"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\ntimeout = \"soon\"\n", "timeout"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\nenv = { \"A-B\" = \"1\" }\n", "environment variable"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\nartifacts = [\"../x\"]\n", "not inside the project"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\nartifacts = [\"a[\"]\n", "artifact"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\nconcurrency = 2\n", "can be 1"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\nretry = 2\n", "unknown field"),
            ("[tool.ci.tasks.a]\nrun = \"x\"\ninstall = true\n", "requirements file or false"),
        ] {
            let err = crate::project::ci_config(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
