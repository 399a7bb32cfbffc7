//! A Python project as `ci` reads it: the one project configuration (`[tool.ci]` in
//! `pyproject.toml`), pytest's own configuration, and what the install step installs. One parser,
//! used by the client (early errors, the pre-upload check), the server (validation at upload) and
//! the controller (the commands a job runs).
//!
//! Everything here reads only files at the project's root, given as [`RootFiles`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The root files this module reads. Callers load those that exist into [`RootFiles`].
pub const ROOT_FILES: &[&str] = &[
    PYPROJECT,
    "pytest.ini",
    ".pytest.ini",
    "tox.ini",
    "setup.cfg",
    "setup.py",
    "requirements.txt",
    "requirements-test.txt",
    "requirements-dev.txt",
];

/// The project configuration file.
pub const PYPROJECT: &str = "pyproject.toml";

/// Files above this size are not read as configuration (they are not configuration).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Whether a file of the project (its root-relative path and size in bytes) is one of the root
/// configuration files this module reads.
pub fn is_root_file(path: &str, size: u64) -> bool {
    ROOT_FILES.contains(&path) && size <= MAX_CONFIG_BYTES
}

/// The text of the project's root files named in [`ROOT_FILES`] that exist (a file that is not
/// UTF-8 is kept as lossy text: it still exists, and its parse fails where it matters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RootFiles {
    texts: BTreeMap<String, String>,
}

impl RootFiles {
    /// Collects the root files from `(root-relative path, bytes)` pairs, ignoring every other path.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut texts = BTreeMap::new();
        for (path, bytes) in pairs {
            if is_root_file(path, bytes.len() as u64) {
                texts.insert(path.to_owned(), String::from_utf8_lossy(bytes).into_owned());
            }
        }
        Self { texts }
    }

    /// Adds one root file (used by callers that read files one by one).
    pub fn insert(&mut self, path: &str, text: String) {
        self.texts.insert(path.to_owned(), text);
    }

    pub fn get(&self, path: &str) -> Option<&str> {
        self.texts.get(path).map(String::as_str)
    }

    pub fn has(&self, path: &str) -> bool {
        self.texts.contains_key(path)
    }
}

/// Why a project's configuration cannot be used. Every message names the file and says what to
/// change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "pyproject.toml is not valid TOML: {0}; fix the file (pip and pytest cannot read it either)"
    )]
    Toml(String),
    #[error("pyproject.toml [tool.ci]: {0}")]
    Schema(String),
}

/// What a job does with a flaky test: one that failed and then passed when run again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlakyRule {
    /// The job passes, naming its flaky tests (the default).
    #[default]
    Pass,
    /// A flaky test fails the job.
    Fail,
}

impl std::str::FromStr for FlakyRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pass" => Ok(FlakyRule::Pass),
            "fail" => Ok(FlakyRule::Fail),
            other => Err(format!(
                "unknown flaky rule {other:?}: use \"pass\" or \"fail\""
            )),
        }
    }
}

/// Which program installs a job's requirements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// uv when the image has it, else pip (the default).
    #[default]
    Auto,
    Pip,
    Uv,
}

impl Installer {
    pub fn as_str(self) -> &'static str {
        match self {
            Installer::Auto => "auto",
            Installer::Pip => "pip",
            Installer::Uv => "uv",
        }
    }

    /// The installer of a job: the operator's when it forces one (`ci-controller --installer
    /// pip|uv`), else the project's (`installer` under `[tool.ci]`), else `auto`.
    pub fn choose(operator: Installer, project: Option<Installer>) -> Installer {
        match operator {
            Installer::Auto => project.unwrap_or_default(),
            forced => forced,
        }
    }
}

impl std::str::FromStr for Installer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Installer::Auto),
            "pip" => Ok(Installer::Pip),
            "uv" => Ok(Installer::Uv),
            other => Err(format!(
                "unknown installer {other:?}: use \"auto\", \"pip\" or \"uv\""
            )),
        }
    }
}

/// `[tool.ci]` in `pyproject.toml`: the one place a project configures `ci`. Every key is listed
/// in the README's reference table.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiConfig {
    /// The image the project's jobs run in (must be one the operator allows).
    pub image: Option<String>,
    /// How many times a job runs its failed tests again (0, the default, never; at most the
    /// operator's maximum).
    pub retries: Option<u32>,
    /// What a flaky test does to the job: `"pass"` (the default) or `"fail"`.
    pub flaky: Option<FlakyRule>,
    /// The project's name, which groups its jobs' history (default: `[project].name`, else the
    /// folder's name).
    pub project: Option<String>,
    /// What installs the requirements: `"uv"`, `"pip"` or `"auto"` (uv when the image has it).
    pub installer: Option<Installer>,
    /// Named tasks, `[tool.ci.tasks.<name>]` (see [`crate::tasks`]).
    #[serde(default)]
    pub tasks: BTreeMap<String, crate::tasks::TaskConfig>,
}

/// Reads `[tool.ci]` from the text of `pyproject.toml` (a file without it is the default).
///
/// # Errors
///
/// [`ConfigError::Toml`] when the file is not TOML, [`ConfigError::Schema`] for an unknown key or
/// a value of the wrong type.
pub fn ci_config(pyproject: &str) -> Result<CiConfig, ConfigError> {
    /// The document down to `[tool.ci]`; everything else in it is other tools' business.
    #[derive(Deserialize)]
    struct Document {
        #[serde(default)]
        tool: Tools,
    }
    #[derive(Default, Deserialize)]
    struct Tools {
        #[serde(default)]
        ci: Option<CiConfig>,
    }
    if let Err(e) = toml::from_str::<toml::Table>(pyproject) {
        return Err(ConfigError::Toml(located(pyproject, &e)));
    }
    let document: Document =
        toml::from_str(pyproject).map_err(|e| ConfigError::Schema(located(pyproject, &e)))?;
    let config = document.tool.ci.unwrap_or_default();
    if config.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
        return Err(ConfigError::Schema(
            "`image` is empty: name an image, or remove the key to use the default".into(),
        ));
    }
    if let Some(name) = &config.project {
        check_project_name(name).map_err(ConfigError::Schema)?;
    }
    crate::tasks::check_tasks(&config.tasks).map_err(ConfigError::Schema)?;
    Ok(config)
}

/// The package name under `[project]` (PEP 621) in the text of `pyproject.toml`, if it has one.
pub fn package_name(pyproject: &str) -> Option<String> {
    let table = toml::from_str::<toml::Table>(pyproject).ok()?;
    let name = table.get("project")?.get("name")?.as_str()?.trim();
    check_project_name(name).ok().map(|()| name.to_owned())
}

/// Longest project name, in characters.
pub const PROJECT_NAME_MAX_CHARS: usize = 100;

/// Why a project name cannot be used: it must be 1 to [`PROJECT_NAME_MAX_CHARS`] characters
/// without control characters or surrounding spaces.
pub fn check_project_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= PROJECT_NAME_MAX_CHARS
        && name.trim() == name
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name {name:?}: use 1 to {PROJECT_NAME_MAX_CHARS} characters without \
             control characters or surrounding spaces"
        ))
    }
}

/// A TOML error as one line that names where it is: `line 3: unknown field ...`.
fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// The pytest configuration pytest itself would use, read from the first file that holds one
/// in pytest's order: `pytest.ini`, `.pytest.ini` (these two even when empty),
/// `pyproject.toml` with `[tool.pytest.ini_options]`, `tox.ini` with `[pytest]`, `setup.cfg`
/// with `[tool:pytest]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PytestConfig {
    /// The file it came from.
    pub file: &'static str,
    /// `addopts`, split as pytest splits it (shell words).
    pub addopts: Vec<String>,
    pub testpaths: Vec<String>,
    pub python_files: Vec<String>,
}

/// Finds the project's pytest configuration (see [`PytestConfig`]). A file that cannot be parsed
/// still counts as the configuration file, with no options: pytest reports its problems itself.
pub fn pytest_config(files: &RootFiles) -> Option<PytestConfig> {
    for file in ["pytest.ini", ".pytest.ini"] {
        if let Some(text) = files.get(file) {
            let section = ini_section(text, "pytest").unwrap_or_default();
            return Some(from_ini(file, &section));
        }
    }
    if let Some(text) = files.get(PYPROJECT) {
        if let Ok(table) = toml::from_str::<toml::Table>(text) {
            if let Some(options) = table
                .get("tool")
                .and_then(|t| t.get("pytest"))
                .and_then(|t| t.get("ini_options"))
            {
                let words = |key: &str| match options.get(key) {
                    Some(toml::Value::String(s)) => shell_words(s),
                    Some(toml::Value::Array(items)) => items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                return Some(PytestConfig {
                    file: PYPROJECT,
                    addopts: words("addopts"),
                    testpaths: words("testpaths"),
                    python_files: words("python_files"),
                });
            }
        }
    }
    for (file, name) in [("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")] {
        if let Some(section) = files.get(file).and_then(|text| ini_section(text, name)) {
            return Some(from_ini(file, &section));
        }
    }
    None
}

/// The keys of one section of an INI file (lower-cased, multi-line values joined), or `None`
/// when the file has no such section or cannot be parsed.
fn ini_section(text: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let mut ini = configparser::ini::Ini::new();
    ini.set_multiline(true);
    ini.set_comment_symbols(&['#', ';']);
    let map = ini.read(text.to_owned()).ok()?;
    let section = map.get(&name.to_lowercase())?;
    Some(
        section
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect(),
    )
}

fn from_ini(file: &'static str, section: &BTreeMap<String, String>) -> PytestConfig {
    let words = |key: &str| section.get(key).map(|v| shell_words(v)).unwrap_or_default();
    PytestConfig {
        file,
        addopts: words("addopts"),
        testpaths: words("testpaths"),
        python_files: words("python_files"),
    }
}

/// Splits an option string as pytest does (`shlex.split`); text with unbalanced quotes falls back
/// to whitespace.
fn shell_words(text: &str) -> Vec<String> {
    shlex::split(text).unwrap_or_else(|| text.split_whitespace().map(str::to_owned).collect())
}

/// Whether pytest arguments choose a verbosity of their own (`-v`, `-qq`, `-sv`, `--verbose`,
/// `--quiet`, `--verbosity=N`), in which case `ci` does not add its default `-v`.
pub fn sets_verbosity(args: &[String]) -> bool {
    /// Short options that take a value: the rest of their word is that value.
    const TAKES_VALUE: &str = "kmprcoWn";
    args.iter().any(|arg| {
        if let Some(long) = arg.strip_prefix("--") {
            return long == "verbose" || long == "quiet" || long.starts_with("verbosity");
        }
        let Some(short) = arg.strip_prefix('-') else {
            return false;
        };
        for c in short.chars() {
            if c == 'v' || c == 'q' {
                return true;
            }
            if TAKES_VALUE.contains(c) {
                return false;
            }
        }
        false
    })
}

/// The test command of a job: `python3 -m pytest`, `-v` unless the project's configuration or the
/// user's arguments set a verbosity, then the user's arguments (`ci submit test -- ARGS`).
pub fn pytest_command(config: Option<&PytestConfig>, extra: &[String]) -> Vec<String> {
    let mut command: Vec<String> = ["python3", "-m", "pytest"].map(String::from).to_vec();
    let configured = config.is_some_and(|c| sets_verbosity(&c.addopts));
    if !configured && !sets_verbosity(extra) {
        command.push("-v".to_owned());
    }
    command.extend(extra.iter().cloned());
    command
}

/// Extras that hold a project's test dependencies, in the order they are looked for.
pub const TEST_EXTRAS: &[&str] = &["test", "tests", "testing"];

/// What the install step installs, decided from the project's root files in this order:
/// 1. `requirements.txt`;
/// 2. else `requirements-test.txt` and `requirements-dev.txt` (those that exist, in that order);
/// 3. else the project itself with its test extra (`.[test]`, `.[tests]` or `.[testing]`), when
///    `pyproject.toml` (`[project.optional-dependencies]`), `setup.cfg`
///    (`[options.extras_require]`) or `setup.py` (`extras_require`) declares one;
/// 4. else nothing: the job has no install step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Install {
    /// `pip install -r FILE ...`
    Requirements(Vec<String>),
    /// `pip install .[EXTRA]`
    ProjectExtra(String),
    Nothing,
}

impl Install {
    /// Decides from the root files (see [`Install`]).
    pub fn plan(files: &RootFiles) -> Self {
        if files.has("requirements.txt") {
            return Install::Requirements(vec!["requirements.txt".to_owned()]);
        }
        let found: Vec<&'static str> = ["requirements-test.txt", "requirements-dev.txt"]
            .into_iter()
            .filter(|f| files.has(f))
            .collect();
        if !found.is_empty() {
            return Install::Requirements(found.into_iter().map(str::to_owned).collect());
        }
        match test_extra(files) {
            Some(extra) => Install::ProjectExtra(extra.to_owned()),
            None => Install::Nothing,
        }
    }

    /// The arguments after `pip install` (the target options are the executor's).
    pub fn pip_args(&self) -> Vec<String> {
        match self {
            Install::Requirements(files) => files
                .iter()
                .flat_map(|f| ["-r".to_owned(), f.clone()])
                .collect(),
            Install::ProjectExtra(extra) => vec![format!(".[{extra}]")],
            Install::Nothing => Vec::new(),
        }
    }

    /// What is installed, for the job's notice: `requirements.txt`, `requirements-test.txt and
    /// requirements-dev.txt`, `the project with its test extra (pip install .[test])`.
    pub fn describe(&self) -> String {
        match self {
            Install::Requirements(files) => files.join(" and "),
            Install::ProjectExtra(extra) => {
                format!("the project with its test extra (pip install .[{extra}])")
            }
            Install::Nothing => "nothing".to_owned(),
        }
    }
}

/// The requirements files the install step does not use (first match wins): those of
/// `requirements-test.txt` and `requirements-dev.txt` that exist when `requirements.txt` is used.
fn not_installed(files: &RootFiles, install: &Install) -> Vec<&'static str> {
    match install {
        Install::Requirements(used) if used.iter().any(|f| f == "requirements.txt") => {
            ["requirements-test.txt", "requirements-dev.txt"]
                .into_iter()
                .filter(|f| files.has(f))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether the project could be installed as a package (`setup.py`, or a `pyproject.toml` with a
/// `[project]` or `[tool.poetry]` table).
fn is_installable(files: &RootFiles) -> bool {
    files.has("setup.py")
        || files
            .get(PYPROJECT)
            .and_then(|text| toml::from_str::<toml::Table>(text).ok())
            .is_some_and(|t| {
                t.contains_key("project")
                    || t.get("tool").and_then(|tool| tool.get("poetry")).is_some()
            })
}

/// The job's notice about its install step: what is installed, and what is not and how to
/// change that.
pub fn install_notice(files: &RootFiles, install: &Install) -> String {
    match install {
        Install::Nothing => {
            let mut text = "nothing to install (no requirements.txt, requirements-test.txt, \
                            requirements-dev.txt or test extra): skipping the install step"
                .to_owned();
            if is_installable(files) {
                text.push_str(
                    "; the project itself is not installed: to install it, add a `test` extra \
                     to pyproject.toml or `-e .` to a requirements-test.txt",
                );
            }
            text
        }
        _ => {
            let mut text = format!("installing {}", install.describe());
            for skipped in not_installed(files, install) {
                text.push_str(&format!(
                    "; {skipped} is not installed: add `-r {skipped}` to requirements.txt to \
                     install it too"
                ));
            }
            text
        }
    }
}

/// The first of [`TEST_EXTRAS`] the project declares.
fn test_extra(files: &RootFiles) -> Option<&'static str> {
    if let Some(table) = files
        .get(PYPROJECT)
        .and_then(|text| toml::from_str::<toml::Table>(text).ok())
    {
        let declared = table
            .get("project")
            .and_then(|p| p.get("optional-dependencies"))
            .and_then(toml::Value::as_table);
        if let Some(extra) =
            declared.and_then(|d| TEST_EXTRAS.iter().find(|e| d.contains_key(**e)).copied())
        {
            return Some(extra);
        }
    }
    if let Some(section) = files
        .get("setup.cfg")
        .and_then(|text| ini_section(text, "options.extras_require"))
    {
        if let Some(extra) = TEST_EXTRAS.iter().find(|e| section.contains_key(**e)) {
            return Some(extra);
        }
    }
    let setup_py = files.get("setup.py")?;
    let after = &setup_py[setup_py.find("extras_require")?..];
    TEST_EXTRAS.iter().copied().find(|extra| {
        [
            format!("\"{extra}\""),
            format!("'{extra}'"),
            format!("{extra}="),
        ]
        .iter()
        .any(|key| {
            after.match_indices(key.as_str()).any(|(at, _)| {
                let rest = after[at + key.len()..].trim_start();
                key.ends_with('=') || rest.starts_with(':')
            })
        })
    })
}

/// A project as a job sees it, from its root files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Project {
    pub ci: CiConfig,
    pub pytest: Option<PytestConfig>,
    /// `[project].name` in `pyproject.toml`.
    pub package: Option<String>,
}

/// What a submission asks for beyond its project files (the flags of `ci submit`, the fields of
/// an upload); each wins over the project's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub retries: Option<u32>,
    pub flaky: Option<FlakyRule>,
    /// `ci submit --project`.
    pub project: Option<String>,
    /// The name of the folder the project was submitted from (the last default of its name).
    pub folder: Option<String>,
    /// `ci submit --no-cache`: neither use nor fill the dependency cache.
    pub no_cache: bool,
}

/// A job's options, decided in one place ([`Project::job_options`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Re-runs of failed tests.
    pub retries: u32,
    pub flaky: FlakyRule,
    /// The project's name: `--project`, else `project` under `[tool.ci]`, else `[project].name`,
    /// else the folder's name.
    pub project: Option<String>,
    /// Neither use nor fill the dependency cache.
    pub no_cache: bool,
}

impl Project {
    /// Reads the project configuration and pytest's configuration.
    ///
    /// # Errors
    ///
    /// A broken `pyproject.toml` or `[tool.ci]` (see [`ci_config`]).
    pub fn read(files: &RootFiles) -> Result<Self, ConfigError> {
        let ci = match files.get(PYPROJECT) {
            Some(text) => ci_config(text)?,
            None => CiConfig::default(),
        };
        Ok(Self {
            ci,
            pytest: pytest_config(files),
            package: files.get(PYPROJECT).and_then(package_name),
        })
    }

    /// The options of a job of this project: what was asked wins over `[tool.ci]`.
    ///
    /// # Errors
    ///
    /// A message for the user: more retries than the operator allows (`max_retries`), or a
    /// project name that cannot be used.
    pub fn job_options(&self, asked: &Requested, max_retries: u32) -> Result<JobOptions, String> {
        let retries = asked.retries.or(self.ci.retries).unwrap_or(0);
        if retries > max_retries {
            return Err(format!(
                "{retries} retries asked for, more than this service allows ({max_retries}): ask \
                 for at most {max_retries} with --retries or `retries` under [tool.ci], or ask the \
                 operator to raise ci-controller --max-retries"
            ));
        }
        if let Some(name) = &asked.project {
            check_project_name(name)?;
        }
        let folder = asked
            .folder
            .as_deref()
            .map(str::trim)
            .filter(|f| check_project_name(f).is_ok());
        let project = asked
            .project
            .clone()
            .or_else(|| self.ci.project.clone())
            .or_else(|| self.package.clone())
            .or_else(|| folder.map(str::to_owned));
        Ok(JobOptions {
            retries,
            flaky: asked.flaky.or(self.ci.flaky).unwrap_or_default(),
            project,
            no_cache: asked.no_cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> RootFiles {
        RootFiles::from_pairs(pairs.iter().map(|(p, t)| (*p, t.as_bytes())))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tool_ci_is_read_strictly() {
        assert_eq!(
            ci_config("[project]\nname = 'x'\n").unwrap(),
            CiConfig::default()
        );
        let config = ci_config("[tool.ci]\nimage = \"python:3.12-slim\"\n").unwrap();
        assert_eq!(config.image.as_deref(), Some("python:3.12-slim"));
        let err = ci_config("[project]\nname = 'x'\n\n[tool.ci]\nimgae = \"x\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Schema(_)), "{err:?}");
        assert!(err.to_string().contains("imgae"), "{err}");
        assert!(err.to_string().contains("line 5"), "names the line: {err}");
        assert!(
            err.to_string().contains("image"),
            "names the known keys: {err}"
        );
        let err = ci_config("[tool.ci]\nimage = 3\n").unwrap_err();
        assert!(err.to_string().contains("[tool.ci]"), "{err}");
        let err = ci_config("[tool.ci\nimage = 'x'").unwrap_err();
        assert!(matches!(err, ConfigError::Toml(_)), "{err:?}");
        assert!(!err.to_string().contains('\n'));
        assert!(ci_config("[tool.ci]\nimage = ' '\n").is_err());
        let config =
            ci_config("[tool.ci]\nretries = 2\nflaky = \"fail\"\nproject = \"shop\"\n").unwrap();
        assert_eq!(
            (config.retries, config.flaky, config.project.as_deref()),
            (Some(2), Some(FlakyRule::Fail), Some("shop"))
        );
        let config = ci_config("[tool.ci]\ninstaller = \"pip\"\n").unwrap();
        assert_eq!(config.installer, Some(Installer::Pip));
        assert!(ci_config("[tool.ci]\ninstaller = \"conda\"\n").is_err());
        assert_eq!(
            Installer::choose(Installer::Auto, Some(Installer::Pip)),
            Installer::Pip
        );
        assert_eq!(Installer::choose(Installer::Auto, None), Installer::Auto);
        assert_eq!(
            Installer::choose(Installer::Uv, Some(Installer::Pip)),
            Installer::Uv,
            "the operator's forced choice wins"
        );
        let err = ci_config("[tool.ci]\nflaky = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("pass"), "{err}");
        assert!(ci_config("[tool.ci]\nretries = -1\n").is_err());
        assert!(ci_config("[tool.ci]\nproject = \"\"\n").is_err());
    }

    #[test]
    fn job_options_come_from_the_request_then_tool_ci_then_the_package_then_the_folder() {
        let project = |text: &str| Project::read(&files(&[("pyproject.toml", text)])).unwrap();
        let asked = Requested {
            folder: Some("checkout".into()),
            ..Requested::default()
        };
        let bare = Project::default().job_options(&asked, 3).unwrap();
        assert_eq!(
            bare,
            JobOptions {
                retries: 0,
                flaky: FlakyRule::Pass,
                project: Some("checkout".into()),
                no_cache: false,
            }
        );
        let package = project("[project]\nname = \"shop-api\"\n");
        assert_eq!(
            package.job_options(&asked, 3).unwrap().project.as_deref(),
            Some("shop-api")
        );
        let configured = project(
            "[project]\nname = \"shop-api\"\n[tool.ci]\nproject = \"shop\"\nretries = 2\nflaky = \"fail\"\n",
        );
        let options = configured.job_options(&asked, 3).unwrap();
        assert_eq!(
            (options.retries, options.flaky, options.project.as_deref()),
            (2, FlakyRule::Fail, Some("shop"))
        );
        let flags = Requested {
            retries: Some(1),
            flaky: Some(FlakyRule::Pass),
            project: Some("mine".into()),
            folder: Some("checkout".into()),
            no_cache: true,
        };
        let options = configured.job_options(&flags, 3).unwrap();
        assert_eq!(
            (options.retries, options.flaky, options.project.as_deref()),
            (1, FlakyRule::Pass, Some("mine"))
        );
        assert!(options.no_cache);
        let err = configured.job_options(&asked, 1).unwrap_err();
        assert!(
            err.contains("--max-retries") && err.contains("(1)"),
            "{err}"
        );
        let bad = Requested {
            project: Some("a\nb".into()),
            ..Requested::default()
        };
        assert!(Project::default().job_options(&bad, 3).is_err());
        assert_eq!(
            Project::default()
                .job_options(&Requested::default(), 0)
                .unwrap()
                .project,
            None
        );
    }

    #[test]
    fn pytest_config_follows_pytests_order() {
        let empty_ini = files(&[("pytest.ini", ""), ("tox.ini", "[pytest]\naddopts = -q\n")]);
        let config = pytest_config(&empty_ini).unwrap();
        assert_eq!(config.file, "pytest.ini");
        assert!(config.addopts.is_empty());

        let pyproject = files(&[
            (
                "pyproject.toml",
                "[tool.pytest.ini_options]\naddopts = \"-ra --strict-markers\"\ntestpaths = [\"src\", \"checks\"]\npython_files = [\"tests.py\", \"check_*.py\"]\n",
            ),
            ("setup.cfg", "[tool:pytest]\naddopts = -q\n"),
        ]);
        let config = pytest_config(&pyproject).unwrap();
        assert_eq!(config.file, "pyproject.toml");
        assert_eq!(config.addopts, strings(&["-ra", "--strict-markers"]));
        assert_eq!(config.testpaths, strings(&["src", "checks"]));
        assert_eq!(config.python_files, strings(&["tests.py", "check_*.py"]));

        // A pyproject.toml without pytest's table does not count.
        let tox = files(&[
            ("pyproject.toml", "[project]\nname = 'x'\n"),
            (
                "tox.ini",
                "[tox]\nenvlist = py3\n\n[pytest]\npython_files =\n    check_*.py\n    *_check.py\naddopts = --ff --sw\n",
            ),
        ]);
        let config = pytest_config(&tox).unwrap();
        assert_eq!(config.file, "tox.ini");
        assert_eq!(config.python_files, strings(&["check_*.py", "*_check.py"]));
        assert_eq!(config.addopts, strings(&["--ff", "--sw"]));

        let cfg = files(&[(
            "setup.cfg",
            "[metadata]\nname = x\n[tool:pytest]\naddopts = -p no:warnings -q\n",
        )]);
        let config = pytest_config(&cfg).unwrap();
        assert_eq!(config.file, "setup.cfg");
        assert!(sets_verbosity(&config.addopts));

        assert_eq!(
            pytest_config(&files(&[("setup.cfg", "[metadata]\nname = x\n")])),
            None
        );
    }

    #[test]
    fn verbosity_is_the_projects_when_it_sets_one() {
        for args in [
            &["-v"][..],
            &["-vv"],
            &["-q"],
            &["-sv"],
            &["-x", "-q"],
            &["--verbose"],
            &["--quiet"],
            &["--verbosity=2"],
        ] {
            assert!(sets_verbosity(&strings(args)), "{args:?}");
        }
        for args in [
            &["-ra"][..],
            &["-s"],
            &["-k", "vq"],
            &["-kvq"],
            &["-pno:warnings"],
            &["--strict-markers"],
            &["tests/test_v.py"],
        ] {
            assert!(!sets_verbosity(&strings(args)), "{args:?}");
        }
        assert_eq!(
            pytest_command(None, &strings(&["-k", "slow"])),
            strings(&["python3", "-m", "pytest", "-v", "-k", "slow"])
        );
        let quiet = PytestConfig {
            addopts: strings(&["-q"]),
            ..Default::default()
        };
        assert_eq!(
            pytest_command(Some(&quiet), &[]),
            strings(&["python3", "-m", "pytest"])
        );
        assert_eq!(
            pytest_command(None, &strings(&["-q"])),
            strings(&["python3", "-m", "pytest", "-q"])
        );
    }

    #[test]
    fn install_order() {
        let plan = |pairs: &[(&str, &str)]| Install::plan(&files(pairs));
        assert_eq!(
            plan(&[("requirements.txt", ""), ("requirements-dev.txt", "")]),
            Install::Requirements(vec!["requirements.txt".to_owned()])
        );
        let both = plan(&[("requirements-dev.txt", ""), ("requirements-test.txt", "")]);
        assert_eq!(
            both,
            Install::Requirements(vec![
                "requirements-test.txt".to_owned(),
                "requirements-dev.txt".to_owned()
            ])
        );
        assert_eq!(
            both.pip_args(),
            strings(&["-r", "requirements-test.txt", "-r", "requirements-dev.txt"])
        );
        assert_eq!(
            both.describe(),
            "requirements-test.txt and requirements-dev.txt"
        );
        let extra = plan(&[(
            "pyproject.toml",
            "[project]\nname = 'x'\n[project.optional-dependencies]\ndocs = []\ntesting = ['pytest']\n",
        )]);
        assert_eq!(extra, Install::ProjectExtra("testing".into()));
        assert_eq!(extra.pip_args(), strings(&[".[testing]"]));
        assert!(extra.describe().contains("pip install .[testing]"));
        assert_eq!(
            plan(&[(
                "setup.cfg",
                "[options.extras_require]\ntests =\n    pytest\n"
            )]),
            Install::ProjectExtra("tests".into())
        );
        assert_eq!(
            plan(&[(
                "setup.py",
                "setup(name='x', extras_require={\"test\": [\"pytest\"]})\n"
            )]),
            Install::ProjectExtra("test".into())
        );
        assert_eq!(
            plan(&[(
                "setup.py",
                "setup(name='x', extras_require=dict(tests=['pytest']))\n"
            )]),
            Install::ProjectExtra("tests".into())
        );
        // A project without a test extra is not installed; nothing to install, no install step.
        assert_eq!(
            plan(&[("setup.py", "setup(name='test')\n")]),
            Install::Nothing
        );
        assert_eq!(
            plan(&[("pyproject.toml", "[project]\nname = 'x'\n")]),
            Install::Nothing
        );
        assert_eq!(plan(&[]), Install::Nothing);
    }

    #[test]
    fn the_install_notice_says_what_is_not_installed_and_how() {
        let notice = |pairs: &[(&str, &str)]| {
            let files = files(pairs);
            install_notice(&files, &Install::plan(&files))
        };
        assert_eq!(
            notice(&[("requirements.txt", "")]),
            "installing requirements.txt"
        );
        let both = notice(&[("requirements.txt", ""), ("requirements-dev.txt", "")]);
        assert!(
            both.starts_with("installing requirements.txt; requirements-dev.txt is not installed")
                && both.contains("`-r requirements-dev.txt`"),
            "{both}"
        );
        let none = notice(&[]);
        assert!(none.ends_with("skipping the install step"), "{none}");
        let project = notice(&[("pyproject.toml", "[project]\nname = 'x'\n")]);
        assert!(
            project.contains("the project itself is not installed"),
            "{project}"
        );
        assert!(notice(&[("setup.py", "")]).contains("`-e .`"));
        let poetry = notice(&[("pyproject.toml", "[tool.poetry]\nname = 'x'\n")]);
        assert!(poetry.contains("not installed"), "{poetry}");
        let tools_only = notice(&[("pyproject.toml", "[tool.black]\nline-length = 100\n")]);
        assert!(!tools_only.contains("not installed"), "{tools_only}");
    }

    #[test]
    fn project_reads_both_configurations() {
        let project = Project::read(&files(&[(
            "pyproject.toml",
            "[tool.ci]\nimage = 'ci-runner:bookworm'\n[tool.pytest.ini_options]\naddopts = '-q'\n",
        )]))
        .unwrap();
        assert_eq!(project.ci.image.as_deref(), Some("ci-runner:bookworm"));
        assert_eq!(project.pytest.unwrap().addopts, strings(&["-q"]));
        assert!(Project::read(&files(&[("pyproject.toml", "not toml [")])).is_err());
        assert_eq!(Project::read(&files(&[])).unwrap(), Project::default());
    }
}
