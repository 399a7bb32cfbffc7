//! What to upload: the project as it is on disk — files with their executable bit, folders
//! (empty ones too), dotfiles — minus what never belongs in a job: version control, virtualenvs,
//! caches, what `.gitignore`/`.ciignore` exclude, and `.env` secrets. Zipped in memory in a
//! stable order.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ci_common::archive::{entry_path, workspace_file_mode, WORKSPACE_DIR_MODE};
use ci_common::project::{is_root_file, pytest_config, Project, RootFiles, PYPROJECT, ROOT_FILES};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::{DirEntry, WalkBuilder};

/// Version-control folders: never uploaded.
const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".bzr", "_darcs", ".jj"];
/// Virtualenvs (besides any folder holding a `pyvenv.cfg`) and caches: never uploaded.
const GENERATED_DIRS: &[&str] = &[
    "venv",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytype",
    ".hypothesis",
    ".ipynb_checkpoints",
    ".tox",
    ".nox",
    "node_modules",
];
/// `.env.*` files that are templates, not secrets: uploaded.
const ENV_TEMPLATES: &[&str] = &[".env.example", ".env.sample", ".env.template", ".env.dist"];

/// Extra ignore file read in every folder, with `.gitignore` syntax. A `!` pattern in it also
/// uploads a `.env` file that is left out by default.
pub const CI_IGNORE: &str = ".ciignore";

/// Whether a file name is a secrets file left out by default: `.env` and `.env.*`, except the
/// templates in [`ENV_TEMPLATES`].
pub fn is_env_secret(name: &str) -> bool {
    (name == ".env" || name.starts_with(".env.")) && !ENV_TEMPLATES.contains(&name)
}

/// What a walk of the project found.
#[derive(Debug, Default, PartialEq)]
pub struct ProjectTree {
    /// Files to upload, relative to the root with `/` separators, sorted.
    pub files: Vec<String>,
    /// Every folder under the root that is uploaded (with or without files), sorted.
    pub dirs: Vec<String>,
    /// `.env` files left out because they may hold secrets.
    pub secrets: Vec<String>,
    /// Symbolic links left out: links to folders, to places outside the project, or to nothing
    /// (a link to a file inside the project is uploaded as that file).
    pub links: Vec<String>,
    /// Files and folders whose names cannot be uploaded (not UTF-8, or with a character the
    /// archive rule refuses, such as `\`), with everything inside them.
    pub unnamed: Vec<String>,
}

/// Walks the project under `root` (see the module documentation for what is left out).
pub fn project_tree(root: &Path) -> Result<ProjectTree> {
    if !root.is_dir() {
        bail!(
            "{} is not a folder: run ci from your project's root folder (or pass -C <DIR>)",
            root.display()
        );
    }
    let mut walker = WalkBuilder::new(root);
    walker
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .ignore(false)
        .parents(true)
        .follow_links(false)
        .add_custom_ignore_filename(CI_IGNORE)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| !is_skipped_dir(entry));
    let mut tree = ProjectTree::default();
    let mut ciignores = CiIgnores::new(root);
    let real_root = root
        .canonicalize()
        .with_context(|| format!("cannot read the folder {}", root.display()))?;
    for entry in walker.build() {
        let entry =
            entry.with_context(|| format!("cannot list the files of {}", root.display()))?;
        if entry.depth() == 0 {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(root)
            .expect("walked paths are under the root");
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        // The one rule for names in an upload; a folder that breaks it is left out whole.
        let uploadable = relative.to_str().is_some_and(|n| entry_path(n).is_ok());
        if !uploadable {
            if !tree
                .unnamed
                .iter()
                .any(|u| name.starts_with(&format!("{u}/")))
            {
                tree.unnamed.push(name);
            }
            continue;
        }
        if tree
            .unnamed
            .iter()
            .any(|u| name.starts_with(&format!("{u}/")))
        {
            continue;
        }
        let file_type = entry.file_type();
        let is_file = match file_type {
            Some(t) if t.is_symlink() => {
                // A link to a file inside the project is that file; any other link is left out.
                let inside = std::fs::canonicalize(entry.path())
                    .is_ok_and(|target| target.starts_with(&real_root) && target.is_file());
                if !inside {
                    tree.links.push(name);
                    continue;
                }
                true
            }
            Some(t) => t.is_file(),
            None => false,
        };
        // Regular files and folders only: special files are not part of an upload.
        match file_type {
            Some(t) if t.is_dir() => tree.dirs.push(name),
            Some(_) if is_file => {
                let file_name = entry.file_name().to_string_lossy();
                if is_env_secret(&file_name) && !ciignores.whitelists(relative) {
                    tree.secrets.push(name);
                } else {
                    tree.files.push(name);
                }
            }
            _ => {}
        }
    }
    tree.files.sort();
    tree.dirs.sort();
    tree.secrets.sort();
    tree.links.sort();
    tree.unnamed.sort();
    Ok(tree)
}

fn is_skipped_dir(entry: &DirEntry) -> bool {
    if entry.depth() == 0 || !entry.file_type().is_some_and(|t| t.is_dir()) {
        return false;
    }
    let name = entry.file_name().to_string_lossy();
    VCS_DIRS.contains(&name.as_ref())
        || GENERATED_DIRS.contains(&name.as_ref())
        || entry.path().join("pyvenv.cfg").is_file()
}

/// The `.ciignore` files of a project, read on demand, to find out whether one of them
/// explicitly uploads a file (`!.env`).
struct CiIgnores {
    root: PathBuf,
    by_dir: HashMap<PathBuf, Option<Gitignore>>,
}

impl CiIgnores {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            by_dir: HashMap::new(),
        }
    }

    /// Whether the nearest `.ciignore` with an opinion about `relative` whitelists it.
    fn whitelists(&mut self, relative: &Path) -> bool {
        let mut dir = relative.parent();
        while let Some(d) = dir {
            let folder = self.root.join(d);
            let matcher = self.by_dir.entry(folder.clone()).or_insert_with(|| {
                let file = folder.join(CI_IGNORE);
                file.is_file().then(|| {
                    let mut builder = GitignoreBuilder::new(&folder);
                    builder.add(&file);
                    builder.build().ok()
                })?
            });
            if let Some(matcher) = matcher {
                let m = matcher.matched(self.root.join(relative), false);
                if m.is_whitelist() {
                    return true;
                }
                if m.is_ignore() {
                    return false;
                }
            }
            dir = d.parent();
        }
        false
    }
}

/// What the pre-upload check says about a project that can be uploaded.
#[derive(Debug, Default, PartialEq)]
pub struct Check {
    /// Doubts worth a line on stderr (the upload goes ahead).
    pub warnings: Vec<String>,
}

/// The pre-upload check of a job of `task`: refuses only what cannot be a Python project (no
/// Python file at all, when the job runs pytest), a task the project does not have, or a project
/// configuration that the server would refuse too; everything doubtful is a warning. pytest decides what the tests are; a job that
/// runs no pytest (a task of the project's own) is checked only for its configuration.
pub fn check_project(
    tree: &ProjectTree,
    root: &RootFiles,
    shown: &str,
    task: &str,
) -> Result<Check> {
    if tree.files.is_empty() {
        bail!(
            "{shown} has no files to upload (all ignored?): run ci from your project's root folder"
        );
    }
    let project =
        Project::read(root).with_context(|| format!("{shown}/{PYPROJECT} cannot be used"))?;
    ci_common::tasks::check_task(&project, task).map_err(anyhow::Error::msg)?;
    if !ci_common::tasks::runs_pytest(&project, task) {
        return Ok(Check::default());
    }
    if !tree.files.iter().any(|f| f.ends_with(".py")) {
        bail!(
            "{shown} has no Python file (.py) at all, so there is nothing for pytest to run: run ci \
             from your Python project's root folder (or pass -C <DIR>)"
        );
    }
    let mut check = Check::default();
    let configured = pytest_config(root).is_some();
    let has_conftest = tree
        .files
        .iter()
        .any(|f| f.rsplit('/').next() == Some("conftest.py"));
    let has_default_tests = tree.files.iter().any(|f| {
        let file = f.rsplit('/').next().unwrap_or_default();
        file.ends_with(".py") && (file.starts_with("test_") || file.ends_with("_test.py"))
    });
    if let Some(hint) = root_above(Path::new(shown), root) {
        check.warnings.push(hint);
    }
    if !configured && !has_conftest && !has_default_tests {
        check.warnings.push(format!(
            "{shown} has no test_*.py or *_test.py file, no conftest.py and no pytest \
             configuration (pytest.ini, [tool.pytest.ini_options] in pyproject.toml, [pytest] in \
             tox.ini, [tool:pytest] in setup.cfg): pytest may collect no tests (exit 5)"
        ));
    }
    Ok(check)
}

/// Project files that mark a folder as a project's root.
const ROOT_MARKERS: &[&str] = &[
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "tox.ini",
    "pytest.ini",
    "requirements.txt",
];

/// When the folder has none of [`ROOT_MARKERS`] but a folder above it (up to the enclosing git
/// checkout) has one, a hint that the project's root is there: only the folder given is uploaded.
fn root_above(dir: &Path, root: &RootFiles) -> Option<String> {
    if ROOT_MARKERS.iter().any(|m| root.has(m)) {
        return None;
    }
    let mut current = dir.parent();
    while let Some(folder) = current {
        if let Some(marker) = ROOT_MARKERS.iter().find(|m| folder.join(m).is_file()) {
            return Some(format!(
                "{} has {marker}: it looks like the project's root, and only {} is uploaded; \
                 run ci there (or pass -C {})",
                folder.display(),
                dir.display(),
                folder.display()
            ));
        }
        if folder.join(".git").exists() {
            return None;
        }
        current = folder.parent();
    }
    None
}

/// Reads the project's root configuration files (those uploaded that [`is_root_file`] names).
pub fn root_files(root: &Path, tree: &ProjectTree) -> Result<RootFiles> {
    let mut files = RootFiles::default();
    for name in &tree.files {
        let path = root.join(name);
        let size = || {
            std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))
                .map(|m| m.len())
        };
        if ROOT_FILES.contains(&name.as_str()) && is_root_file(name, size()?) {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            files.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(files)
}

/// The project's files for a job of `task`, checked ([`check_project`]) and zipped; fails
/// before anything is uploaded if it cannot be a Python project or its `pyproject.toml` is broken.
pub fn zip_project(root: &Path, task: &str) -> Result<Zipped> {
    let tree = project_tree(root)?;
    let shown = display_dir(root);
    let root_config = root_files(root, &tree)?;
    let check = check_project(&tree, &root_config, &shown, task)?;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for dir in &tree.dirs {
        writer
            .add_directory(
                format!("{dir}/"),
                options.unix_permissions(WORKSPACE_DIR_MODE),
            )
            .with_context(|| format!("cannot zip {dir}/"))?;
    }
    for name in &tree.files {
        let path = root.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        writer
            .start_file(name.as_str(), options.unix_permissions(file_mode(&path)))
            .and_then(|()| writer.write_all(&bytes).map_err(Into::into))
            .with_context(|| format!("cannot zip {name}"))?;
    }
    let bytes = writer
        .finish()
        .context("cannot finish the zip archive")?
        .into_inner();
    Ok(Zipped {
        notes: left_out_notes(&tree),
        files: tree.files,
        warnings: check.warnings,
        bytes,
    })
}

/// One line per kind of file left out that the user may not expect to be.
fn left_out_notes(tree: &ProjectTree) -> Vec<String> {
    let mut notes = Vec::new();
    if !tree.secrets.is_empty() {
        notes.push(format!(
            "left out {} (.env files may hold secrets; add `!NAME` to .ciignore to upload one)",
            tree.secrets.join(", ")
        ));
    }
    if !tree.links.is_empty() {
        notes.push(format!(
            "left out the symbolic links {} (only links to files inside the project are \
             uploaded, as the file they point to)",
            tree.links.join(", ")
        ));
    }
    if !tree.unnamed.is_empty() {
        notes.push(format!(
            "left out {} (names that are not UTF-8 or hold a `\\` or a control character \
             cannot be uploaded: rename them, or list them in .ciignore)",
            tree.unnamed.join(", ")
        ));
    }
    notes
}

/// The mode a file is zipped with: 0755 when it is executable here, else 0644.
#[cfg(unix)]
fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    workspace_file_mode(std::fs::metadata(path).ok().map(|m| m.permissions().mode()))
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> u32 {
    workspace_file_mode(None)
}

/// A zipped project.
pub struct Zipped {
    pub files: Vec<String>,
    /// What was left out that the user may not expect (`.env` files, links, unusable names).
    pub notes: Vec<String>,
    /// What the pre-upload check doubts.
    pub warnings: Vec<String>,
    pub bytes: Vec<u8>,
}

fn display_dir(root: &Path) -> String {
    let absolute: PathBuf = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    absolute.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ci_common::api::DEFAULT_TASK;

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn walker_keeps_the_project_and_leaves_out_noise_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "app/__init__.py",
            "app/core.py",
            "tests/test_core.py",
            "requirements.txt",
            "build/out.bin",
            "data/big.csv",
            "data/keep.csv",
            "notes.log",
            ".env",
            ".env.local",
            ".env.example",
            ".coveragerc",
            "reports/.gitkeep",
            ".hidden/kept.txt",
            ".git/config",
            ".hg/store",
            "venv/lib/x.py",
            ".venv/lib/x.py",
            "env3/pyvenv.cfg",
            "env3/lib/site.py",
            "app/__pycache__/core.cpython-312.pyc",
            ".pytest_cache/v/cache",
            ".ruff_cache/x",
            "sub/generated.py",
            "sub/kept.py",
        ] {
            write(root, name, "x");
        }
        std::fs::create_dir_all(root.join("var/empty")).unwrap();
        write(root, ".gitignore", "build/\n*.log\n");
        write(root, ".ciignore", "data/big.csv\n");
        write(root, "sub/.gitignore", "generated.py\n");

        let tree = project_tree(root).unwrap();
        assert_eq!(
            tree.files,
            [
                ".ciignore",
                ".coveragerc",
                ".env.example",
                ".gitignore",
                ".hidden/kept.txt",
                "app/__init__.py",
                "app/core.py",
                "data/keep.csv",
                "reports/.gitkeep",
                "requirements.txt",
                "sub/.gitignore",
                "sub/kept.py",
                "tests/test_core.py",
            ]
        );
        assert_eq!(
            tree.dirs,
            [
                ".hidden",
                "app",
                "data",
                "reports",
                "sub",
                "tests",
                "var",
                "var/empty"
            ]
        );
        assert_eq!(tree.secrets, [".env", ".env.local"]);
    }

    #[test]
    fn a_ciignore_whitelist_uploads_a_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "test_a.py", "x");
        write(dir.path(), ".env", "A=1");
        write(dir.path(), "conf/.env.test", "B=1");
        write(dir.path(), ".ciignore", "!.env\n");
        let tree = project_tree(dir.path()).unwrap();
        assert!(tree.files.contains(&".env".to_owned()), "{tree:?}");
        assert!(!tree.files.contains(&"conf/.env.test".to_owned()));
        assert_eq!(tree.secrets, ["conf/.env.test"]);
    }

    #[test]
    fn secret_names() {
        for name in [".env", ".env.local", ".env.production"] {
            assert!(is_env_secret(name), "{name}");
        }
        for name in [".env.example", ".env.sample", ".envrc", "env", "x.env"] {
            assert!(!is_env_secret(name), "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_to_files_inside_are_files_and_other_links_are_left_out_with_a_note() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "test_a.py", "x");
        write(root, "requirements/dev.txt", "pytest\n");
        symlink("requirements/dev.txt", root.join("requirements.txt")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        symlink("requirements", root.join("reqs")).unwrap();
        symlink("missing.txt", root.join("dangling")).unwrap();
        let tree = project_tree(root).unwrap();
        assert_eq!(
            tree.files,
            ["requirements.txt", "requirements/dev.txt", "test_a.py"]
        );
        assert_eq!(tree.links, ["dangling", "passwd", "reqs"]);
        let notes = left_out_notes(&tree);
        assert!(notes[0].contains("dangling, passwd, reqs"), "{notes:?}");
        // The link is read as the file it points to.
        let root_config = root_files(root, &tree).unwrap();
        assert_eq!(root_config.get("requirements.txt"), Some("pytest\n"));
    }

    #[cfg(unix)]
    #[test]
    fn names_that_cannot_be_uploaded_are_left_out_with_a_note() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "test_a.py", "x");
        write(root, "back\\slash.txt", "x");
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
        std::fs::create_dir(root.join(latin1)).unwrap();
        std::fs::write(root.join(latin1).join("inside.txt"), "x").unwrap();
        let tree = project_tree(root).unwrap();
        assert_eq!(tree.files, ["test_a.py"]);
        assert_eq!(tree.unnamed, ["back\\slash.txt", "caf\u{fffd}"]);
        let notes = left_out_notes(&tree);
        assert!(notes[0].contains("rename them"), "{notes:?}");
        // And the rest zips: nothing fails on them.
        assert!(zip_project(root, DEFAULT_TASK).is_ok());
    }

    #[test]
    fn a_subfolder_of_a_project_gets_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "setup.cfg", "[tool:pytest]\n");
        write(root, "tests/unit/test_a.py", "x");
        let sub = root.join("tests/unit");
        let tree = project_tree(&sub).unwrap();
        let config = root_files(&sub, &tree).unwrap();
        let check = check_project(&tree, &config, &display_dir(&sub), DEFAULT_TASK).unwrap();
        assert_eq!(check.warnings.len(), 1, "{:?}", check.warnings);
        assert!(
            check.warnings[0].contains("setup.cfg") && check.warnings[0].contains("-C"),
            "{:?}",
            check.warnings
        );
        let tree = project_tree(root).unwrap();
        let config = root_files(root, &tree).unwrap();
        assert!(
            check_project(&tree, &config, &display_dir(root), DEFAULT_TASK)
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    fn checked(files: &[(&str, &str)]) -> Result<Check> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        let tree = project_tree(dir.path()).unwrap();
        let root = root_files(dir.path(), &tree).unwrap();
        check_project(&tree, &root, "DIR", DEFAULT_TASK)
    }

    #[test]
    fn a_task_that_runs_no_pytest_is_checked_only_for_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            "[tool.ci.tasks.deploy]\nrun = \"./deploy.sh\"\n",
        );
        write(dir.path(), "deploy.sh", "echo hi\n");
        let tree = project_tree(dir.path()).unwrap();
        let root = root_files(dir.path(), &tree).unwrap();
        let check = check_project(&tree, &root, "DIR", "deploy").unwrap();
        assert_eq!(check.warnings, Vec::<String>::new());
        assert!(
            check_project(&tree, &root, "DIR", DEFAULT_TASK).is_err(),
            "pytest needs Python files"
        );
        let unknown = format!(
            "{:#}",
            check_project(&tree, &root, "DIR", "release").unwrap_err()
        );
        assert!(unknown.contains("unknown task \"release\""), "{unknown}");
        assert!(unknown.contains("deploy, test"), "{unknown}");
    }

    #[test]
    fn the_check_refuses_only_what_has_no_python_at_all() {
        let message = format!("{:#}", checked(&[("README.md", "hi")]).unwrap_err());
        assert!(message.contains("no Python file"), "{message}");
        let message = format!("{:#}", checked(&[]).unwrap_err());
        assert!(message.contains("no files to upload"), "{message}");

        // pytest's own configuration, conftest.py, tests.py and src layouts are accepted.
        for project in [
            &[
                (
                    "pyproject.toml",
                    "[tool.pytest.ini_options]\npython_files = ['tests.py']\n",
                ),
                ("src/shop/tests.py", "def test_a(): pass\n"),
            ][..],
            &[
                ("tox.ini", "[pytest]\npython_files = check_*.py\n"),
                ("checks/check_a.py", ""),
            ],
            &[
                ("setup.cfg", "[tool:pytest]\ntestpaths = t\n"),
                ("t/x.py", ""),
            ],
            &[("pytest.ini", ""), ("lib.py", "")],
            &[("conftest.py", ""), ("lib.py", "")],
            &[("pkg/thing_test.py", "")],
        ] {
            let check = checked(project).unwrap();
            assert!(
                check.warnings.is_empty(),
                "{project:?}: {:?}",
                check.warnings
            );
        }
        // Doubtful, but pytest decides: a warning.
        let check = checked(&[("main.py", "print(1)\n")]).unwrap();
        assert_eq!(check.warnings.len(), 1);
        assert!(check.warnings[0].contains("exit 5"), "{:?}", check.warnings);
    }

    #[test]
    fn a_broken_tool_ci_is_refused_before_upload() {
        let message = format!(
            "{:#}",
            checked(&[
                ("pyproject.toml", "[tool.ci]\nimgae = 'x'\n"),
                ("test_a.py", "")
            ])
            .unwrap_err()
        );
        assert!(message.contains("imgae"), "{message}");
        assert!(message.contains("pyproject.toml"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn zip_keeps_modes_folders_and_dotfiles() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tests/test_a.py", "def test_a(): pass\n");
        write(dir.path(), "tools/bin/run.sh", "#!/bin/sh\n");
        write(dir.path(), "reports/.gitkeep", "");
        write(dir.path(), "skip.log", "x");
        write(dir.path(), ".gitignore", "*.log\n");
        std::fs::set_permissions(
            dir.path().join("tools/bin/run.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let zipped = zip_project(dir.path(), DEFAULT_TASK).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped.bytes)).unwrap();
        let mut seen = Vec::new();
        for i in 0..archive.len() {
            let entry = archive.by_index(i).unwrap();
            seen.push((entry.name().to_owned(), entry.unix_mode().unwrap() & 0o777));
        }
        assert_eq!(
            seen,
            [
                ("empty/".to_owned(), 0o755),
                ("reports/".to_owned(), 0o755),
                ("tests/".to_owned(), 0o755),
                ("tools/".to_owned(), 0o755),
                ("tools/bin/".to_owned(), 0o755),
                (".gitignore".to_owned(), 0o644),
                ("reports/.gitkeep".to_owned(), 0o644),
                ("tests/test_a.py".to_owned(), 0o644),
                ("tools/bin/run.sh".to_owned(), 0o755),
            ]
        );
    }
}
