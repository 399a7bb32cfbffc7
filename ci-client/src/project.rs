//! Finding what to upload: the project's files, minus what `.gitignore`/`.ciignore` exclude,
//! version control, virtualenvs, caches and dotfiles; zipped in memory in a stable order.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ignore::{DirEntry, WalkBuilder};

/// Folders never uploaded, whatever the ignore files say.
const SKIPPED_DIRS: &[&str] = &[
    "venv",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".tox",
    ".git",
    "node_modules",
];

/// Extra ignore file read in every folder, with `.gitignore` syntax.
pub const CI_IGNORE: &str = ".ciignore";

/// The files to upload, as paths relative to `root` with `/` separators, sorted.
pub fn project_files(root: &Path) -> Result<Vec<String>> {
    if !root.is_dir() {
        bail!(
            "{} is not a folder: run ci from your project's root folder (or pass -C <DIR>)",
            root.display()
        );
    }
    let mut walker = WalkBuilder::new(root);
    walker
        .hidden(true)
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
    let mut files = Vec::new();
    for entry in walker.build() {
        let entry =
            entry.with_context(|| format!("cannot list the files of {}", root.display()))?;
        // Regular files only: symlinks and special files are not part of a project upload.
        if !entry.file_type().is_some_and(|t| t.is_file()) {
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
        files.push(name);
    }
    files.sort();
    Ok(files)
}

fn is_skipped_dir(entry: &DirEntry) -> bool {
    if entry.depth() == 0 || !entry.file_type().is_some_and(|t| t.is_dir()) {
        return false;
    }
    let name = entry.file_name().to_string_lossy();
    SKIPPED_DIRS.contains(&name.as_ref()) || entry.path().join("pyvenv.cfg").is_file()
}

/// Whether the files look like a Python project with tests: a `tests/` folder or a
/// `test_*.py` file somewhere.
pub fn has_tests(files: &[String]) -> bool {
    files.iter().any(|f| {
        let mut parts: Vec<&str> = f.split('/').collect();
        let file = parts.pop().unwrap_or_default();
        parts.contains(&"tests")
            || (file.starts_with("test_") && file.ends_with(".py"))
            || file.ends_with("_test.py")
    })
}

/// The project's files, zipped; fails before anything is uploaded if there is nothing to test.
pub fn zip_project(root: &Path) -> Result<Zipped> {
    let files = project_files(root)?;
    let shown = display_dir(root);
    if files.is_empty() {
        bail!(
            "{shown} has no files to upload (all ignored?): run ci from your project's root folder"
        );
    }
    if !has_tests(&files) {
        bail!(
            "{shown} does not look like a Python project with tests (no tests/ folder and no test_*.py file): \
             run ci from your project's root folder"
        );
    }
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for name in &files {
        let path = root.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        writer
            .start_file(name.as_str(), options)
            .and_then(|()| writer.write_all(&bytes).map_err(Into::into))
            .with_context(|| format!("cannot zip {name}"))?;
    }
    let bytes = writer
        .finish()
        .context("cannot finish the zip archive")?
        .into_inner();
    Ok(Zipped { files, bytes })
}

/// A zipped project.
pub struct Zipped {
    pub files: Vec<String>,
    pub bytes: Vec<u8>,
}

fn display_dir(root: &Path) -> String {
    let absolute: PathBuf = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    absolute.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn walker_honours_ignore_files_and_skips_noise() {
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
            ".hidden/secret.txt",
            ".git/config",
            "venv/lib/x.py",
            ".venv/lib/x.py",
            "env3/pyvenv.cfg",
            "env3/lib/site.py",
            "app/__pycache__/core.cpython-312.pyc",
            ".pytest_cache/v/cache",
            "sub/.gitignore",
            "sub/generated.py",
            "sub/kept.py",
        ] {
            write(root, name, "x");
        }
        write(root, ".gitignore", "build/\n*.log\n");
        write(root, ".ciignore", "data/big.csv\n");
        write(root, "sub/.gitignore", "generated.py\n");

        let files = project_files(root).unwrap();
        assert_eq!(
            files,
            [
                "app/__init__.py",
                "app/core.py",
                "data/keep.csv",
                "requirements.txt",
                "sub/kept.py",
                "tests/test_core.py",
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "test_a.py", "x");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        assert_eq!(project_files(dir.path()).unwrap(), ["test_a.py"]);
    }

    #[test]
    fn what_counts_as_tests() {
        let files = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(has_tests(&files(&["tests/conftest.py"])));
        assert!(has_tests(&files(&["pkg/test_thing.py"])));
        assert!(has_tests(&files(&["thing_test.py"])));
        assert!(!has_tests(&files(&["main.py", "README.md", "contest.py"])));
        assert!(!has_tests(&files(&[])));
    }

    #[test]
    fn zip_holds_the_walked_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tests/test_a.py", "def test_a(): pass\n");
        write(dir.path(), "skip.log", "x");
        write(dir.path(), ".gitignore", "*.log\n");
        let zipped = zip_project(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped.bytes)).unwrap();
        let names: Vec<_> = archive.file_names().map(str::to_owned).collect();
        assert_eq!(names, ["tests/test_a.py"]);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut text).unwrap();
        assert_eq!(text, "def test_a(): pass\n");
    }

    #[test]
    fn a_folder_without_tests_is_refused_before_upload() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "main.py", "print(1)\n");
        let message = format!("{:#}", zip_project(dir.path()).err().unwrap());
        assert!(
            message.contains("does not look like a Python project with tests"),
            "{message}"
        );
        let empty = tempfile::tempdir().unwrap();
        let message = format!("{:#}", zip_project(empty.path()).err().unwrap());
        assert!(message.contains("no files to upload"), "{message}");
    }
}
