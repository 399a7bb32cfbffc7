//! The dependency cache's key: a SHA-256 over the exact input of a job's install step, so that
//! a job whose install would do exactly what an earlier one did can use that install's result
//! instead (scoped to one user: see [`crate::db::cache`]).
//!
//! The input is: the image's ID (not its name, which can move), the install command, and every
//! project file the install reads — the requirements files with the files they include
//! (`-r`/`--requirement`, `-c`/`--constraint`, resolved from the including file's folder), and
//! what they refer to inside the project: a folder of wheels (`-f`/`--find-links ./wheels`), a
//! local package installed as a copy (`./pkg`, and the project itself for `.[test]`: every file
//! under it) or as a link (`-e ./pkg`: its metadata files, since its code is read from the
//! workspace). A reference that leaves the project (`/abs/path`, `../x`, `file:` URLs) makes the
//! install uncacheable, as does a requirements file that is missing.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::archive::entry_path;
use crate::project::Install;

/// Bumped when what goes into a key changes, so old entries stop matching.
const KEY_VERSION: &str = "ci dependency cache v1";

/// Files of a package folder that decide what installing it as a link (`-e`) installs.
const METADATA_FILES: &[&str] = &["pyproject.toml", "setup.py", "setup.cfg"];

/// The files of a project, as the cache key reads them.
pub trait ProjectFiles {
    /// The bytes of the file at `path` (relative, normalized by [`entry_path`]), if it exists.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// Every file under the folder `dir` (`""` is the whole project), with its bytes.
    fn under(&self, dir: &str) -> Vec<(String, Vec<u8>)>;
}

impl ProjectFiles for BTreeMap<String, Vec<u8>> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.get(path).cloned()
    }

    fn under(&self, dir: &str) -> Vec<(String, Vec<u8>)> {
        self.iter()
            .filter(|(path, _)| is_under(path, dir))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect()
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The project files inside a zip archive (the upload), read as they are asked for.
pub struct ZipFiles<'a> {
    zip: &'a [u8],
}

impl<'a> ZipFiles<'a> {
    pub fn new(zip: &'a [u8]) -> Self {
        Self { zip }
    }

    fn each(&self, mut visit: impl FnMut(&str, &mut dyn FnMut() -> Option<Vec<u8>>) -> bool) {
        let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(self.zip)) else {
            return;
        };
        for i in 0..archive.len() {
            let Ok(mut entry) = archive.by_index(i) else {
                continue;
            };
            let Ok(path) = entry_path(entry.name()) else {
                continue;
            };
            if !entry.is_file() {
                continue;
            }
            let mut read = || {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)
                    .ok()
                    .map(|_| bytes)
            };
            if !visit(&path, &mut read) {
                return;
            }
        }
    }
}

impl ProjectFiles for ZipFiles<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let mut found = None;
        self.each(|p, read| {
            if p == path {
                found = read();
                return false;
            }
            true
        });
        found
    }

    fn under(&self, dir: &str) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        self.each(|p, read| {
            if is_under(p, dir) {
                if let Some(bytes) = read() {
                    files.push((p.to_owned(), bytes));
                }
            }
            true
        });
        files
    }
}

/// A dependency cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    /// SHA-256, 64 lower-case hex digits.
    pub hex: String,
    /// The project files it covers, sorted.
    pub files: Vec<String>,
}

impl CacheKey {
    /// The first 12 hex digits, as notices and listings show a key.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

/// Why an install cannot be cached (the job installs without the cache, and says why).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Uncacheable {
    #[error("the install has nothing to key on")]
    Nothing,
    #[error("{file} refers to {reference}, outside the project")]
    Outside { file: String, reference: String },
    #[error("{file} is missing (included by {by})")]
    Missing { file: String, by: String },
    #[error(
        "{file} installs {package} as a link with setup.py (no [build-system] in its \
         pyproject.toml): that install writes into the project, which a cached install cannot \
         restore"
    )]
    WritesProject { file: String, package: String },
}

/// How deep `-r` includes may nest (pip has no limit; a loop is cut here).
const MAX_INCLUDES: usize = 64;

/// The cache key of installing `install` with `command` in the image `image_id`, from the
/// project's `files`.
///
/// # Errors
///
/// [`Uncacheable`] when the input cannot be known from the project alone.
pub fn install_key(
    files: &dyn ProjectFiles,
    install: &Install,
    command: &[String],
    image_id: &str,
) -> Result<CacheKey, Uncacheable> {
    let mut inputs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    match install {
        Install::Nothing => return Err(Uncacheable::Nothing),
        Install::ProjectExtra(_) => inputs.extend(files.under("")),
        Install::Requirements(roots) => {
            let mut queue: Vec<(String, String)> = roots
                .iter()
                .map(|r| (r.clone(), "the install step".to_owned()))
                .collect();
            let mut seen = BTreeSet::new();
            while let Some((file, by)) = queue.pop() {
                if !seen.insert(file.clone()) {
                    continue;
                }
                if seen.len() > MAX_INCLUDES {
                    break;
                }
                let bytes = files.read(&file).ok_or_else(|| Uncacheable::Missing {
                    file: file.clone(),
                    by: by.clone(),
                })?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                inputs.insert(file.clone(), bytes);
                for reference in references(&text) {
                    let outside = || Uncacheable::Outside {
                        file: file.clone(),
                        reference: reference.target().to_owned(),
                    };
                    match &reference {
                        Reference::Include(target) => {
                            let path = resolve(&parent(&file), target).ok_or_else(outside)?;
                            queue.push((path, file.clone()));
                        }
                        Reference::Copy(target) | Reference::Link(target) => {
                            let is_link = matches!(reference, Reference::Link(_));
                            // pip resolves such paths from the working folder (the project's
                            // root) or from the requirements file's folder: both count.
                            for base in [String::new(), parent(&file)] {
                                let dir = resolve(&base, target).ok_or_else(outside)?;
                                if is_link {
                                    // A legacy `setup.py develop` writes its metadata into the
                                    // package's folder (`*.egg-info`), not into the install.
                                    let pyproject = files
                                        .read(&join(&dir, "pyproject.toml"))
                                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                                        .unwrap_or_default();
                                    if !pyproject.contains("[build-system]") {
                                        return Err(Uncacheable::WritesProject {
                                            file: file.clone(),
                                            package: if dir.is_empty() {
                                                "the project".to_owned()
                                            } else {
                                                dir.clone()
                                            },
                                        });
                                    }
                                    for name in METADATA_FILES {
                                        let path = join(&dir, name);
                                        if let Some(bytes) = files.read(&path) {
                                            inputs.insert(path, bytes);
                                        }
                                    }
                                } else {
                                    inputs.extend(files.under(&dir));
                                    if let Some(bytes) = files.read(&dir) {
                                        inputs.insert(dir.clone(), bytes);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let mut hash = Sha256::new();
    hash.update(KEY_VERSION.as_bytes());
    hash.update(b"\0image\0");
    hash.update(image_id.as_bytes());
    hash.update(b"\0command\0");
    for arg in command {
        hash.update((arg.len() as u64).to_le_bytes());
        hash.update(arg.as_bytes());
    }
    for (path, bytes) in &inputs {
        hash.update(b"\0file\0");
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    Ok(CacheKey {
        hex: crate::keys::hex(&hash.finalize()),
        files: inputs.into_keys().collect(),
    })
}

/// Something a requirements file refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reference {
    /// Another requirements or constraints file (`-r`, `-c`).
    Include(String),
    /// A local folder whose files are installed (`./pkg`, `-f ./wheels`).
    Copy(String),
    /// A local package installed as a link (`-e ./pkg`).
    Link(String),
}

impl Reference {
    fn target(&self) -> &str {
        match self {
            Reference::Include(t) | Reference::Copy(t) | Reference::Link(t) => t,
        }
    }
}

/// The lines of a requirements file as pip reads them: comments dropped, `\` continuations
/// joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = match raw.find('#') {
            Some(0) => "",
            Some(at) if raw[..at].ends_with(char::is_whitespace) => &raw[..at],
            _ => raw,
        };
        if let Some(joined) = line.strip_suffix('\\') {
            current.push_str(joined);
            continue;
        }
        current.push_str(line);
        let done = std::mem::take(&mut current);
        if !done.trim().is_empty() {
            lines.push(done.trim().to_owned());
        }
    }
    if !current.trim().is_empty() {
        lines.push(current.trim().to_owned());
    }
    lines
}

/// Whether the value of `-e` or `-f` is a local path (anything but a URL).
fn is_path(value: &str) -> bool {
    !value.contains("://") || value.starts_with("file:")
}

/// Whether a requirement line names a local path rather than a package or a URL.
fn is_local(target: &str) -> bool {
    target.starts_with('.')
        || target.starts_with('/')
        || target.starts_with("file:")
        || (target.contains('/') && !target.contains("://") && !target.contains('@'))
}

/// The references of a requirements file's text.
fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            let (option, inline) = match word.split_once('=') {
                Some((o, v)) if o.starts_with("--") => (o, Some(v.to_owned())),
                _ => (word, None),
            };
            let short_inline = |flag: &str| {
                word.strip_prefix(flag)
                    .filter(|rest| !rest.is_empty() && !word.starts_with("--"))
                    .map(str::to_owned)
            };
            let kind = match option {
                "-r" | "--requirement" | "-c" | "--constraint" => Some(0),
                "-e" | "--editable" => Some(1),
                "-f" | "--find-links" => Some(2),
                _ => None,
            };
            let value = match kind {
                Some(_) => inline.or_else(|| words.next().map(str::to_owned)),
                None => None,
            };
            match (kind, value) {
                (Some(0), Some(v)) => found.push(Reference::Include(v)),
                (Some(1), Some(v)) if is_path(&v) => found.push(Reference::Link(strip_extras(&v))),
                (Some(2), Some(v)) if is_path(&v) => found.push(Reference::Copy(v)),
                (Some(_), _) => {}
                (None, _) => {
                    if let Some(v) = short_inline("-r").or_else(|| short_inline("-c")) {
                        found.push(Reference::Include(v));
                    } else if let Some(v) = short_inline("-e") {
                        if is_path(&v) {
                            found.push(Reference::Link(strip_extras(&v)));
                        }
                    } else if let Some(v) = short_inline("-f") {
                        if is_path(&v) {
                            found.push(Reference::Copy(v));
                        }
                    } else if !word.starts_with('-') && is_local(word) {
                        found.push(Reference::Copy(strip_extras(word)));
                    }
                    // A requirement's words after its name (markers, options) are not paths.
                    break;
                }
            }
        }
    }
    found
}

/// `./pkg[test]` → `./pkg`.
fn strip_extras(target: &str) -> String {
    match target.find('[') {
        Some(at) if target.ends_with(']') => target[..at].to_owned(),
        _ => target.to_owned(),
    }
}

/// The folder of a project path (`a/b.txt` → `a`, `b.txt` → ``).
fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(dir, _)| dir.to_owned())
        .unwrap_or_default()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// `target` from the folder `base`, as a normalized project path (`""` is the project's root),
/// or `None` when it leaves the project.
fn resolve(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains("://") || target.starts_with("file:") {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec()))
            .collect()
    }

    fn requirements() -> Install {
        Install::Requirements(vec!["requirements.txt".to_owned()])
    }

    fn key(files: &BTreeMap<String, Vec<u8>>) -> CacheKey {
        install_key(files, &requirements(), &["pip".into()], "sha256:img").unwrap()
    }

    #[test]
    fn the_key_covers_requirements_their_includes_and_local_references() {
        let files = project(&[
            (
                "requirements.txt",
                "six==1.16  # pinned\n-r reqs/base.txt\n--find-links ./wheels\n-e ./libs/tool[dev]\n./vendor/pkg\nrequests ; python_version > '3'\n",
            ),
            ("reqs/base.txt", "-c constraints.txt\nattrs\n"),
            ("reqs/constraints.txt", "attrs<24\n"),
            ("wheels/attrs-23.whl", "wheel bytes"),
            (
                "libs/tool/pyproject.toml",
                "[build-system]\nrequires = []\n[project]\nname='tool'\n",
            ),
            ("libs/tool/tool.py", "code"),
            ("vendor/pkg/setup.py", "setup()"),
            ("vendor/pkg/pkg/__init__.py", "x = 1"),
            ("src/app.py", "print()"),
            ("tests/test_app.py", "def test(): pass"),
        ]);
        let key = key(&files);
        assert_eq!(key.hex.len(), 64);
        assert_eq!(
            key.files,
            [
                "libs/tool/pyproject.toml",
                "reqs/base.txt",
                "reqs/constraints.txt",
                "requirements.txt",
                "vendor/pkg/pkg/__init__.py",
                "vendor/pkg/setup.py",
                "wheels/attrs-23.whl",
            ]
        );
        // Code the install does not read changes nothing; anything it reads changes the key.
        let mut edited = files.clone();
        edited.insert("src/app.py".into(), b"changed".to_vec());
        edited.insert("libs/tool/tool.py".into(), b"changed".to_vec());
        assert_eq!(super::tests::key(&edited), key);
        for path in [
            "reqs/constraints.txt",
            "wheels/attrs-23.whl",
            "vendor/pkg/pkg/__init__.py",
        ] {
            let mut edited = files.clone();
            edited.insert(path.into(), b"changed".to_vec());
            assert_ne!(super::tests::key(&edited), key, "{path}");
        }
        let other_image = install_key(&files, &requirements(), &["pip".into()], "sha256:new");
        assert_ne!(other_image.unwrap(), key);
        let other_command = install_key(&files, &requirements(), &["uv".into()], "sha256:img");
        assert_ne!(other_command.unwrap(), key);
        assert_eq!(key.short(), &key.hex[..12]);
    }

    #[test]
    fn inputs_outside_the_project_or_missing_are_not_cached() {
        for text in [
            "-r ../other.txt\n",
            "-e /opt/pkg\n",
            "--find-links=file:///wheels\n",
        ] {
            let files = project(&[("requirements.txt", text)]);
            let err = install_key(&files, &requirements(), &[], "i").unwrap_err();
            assert!(
                matches!(err, Uncacheable::Outside { .. }),
                "{text}: {err:?}"
            );
        }
        let files = project(&[("requirements.txt", "-r missing.txt\n")]);
        assert_eq!(
            install_key(&files, &requirements(), &[], "i").unwrap_err(),
            Uncacheable::Missing {
                file: "missing.txt".into(),
                by: "requirements.txt".into()
            }
        );
        assert_eq!(
            install_key(&files, &Install::Nothing, &[], "i").unwrap_err(),
            Uncacheable::Nothing
        );
        // URLs and package names are not local; include loops end.
        let files = project(&[
            (
                "requirements.txt",
                "git+https://example.com/x.git@v1#egg=x\npkg @ https://example.com/p.whl\n-r requirements.txt\n",
            ),
        ]);
        assert_eq!(key(&files).files, ["requirements.txt"]);
    }

    #[test]
    fn a_legacy_editable_install_writes_into_the_project_and_is_not_cached() {
        let files = project(&[("requirements.txt", "-e .\n"), ("setup.py", "setup()")]);
        let err = install_key(&files, &requirements(), &[], "i").unwrap_err();
        assert!(matches!(err, Uncacheable::WritesProject { .. }), "{err:?}");
        assert!(err.to_string().contains("the project"), "{err}");
        let modern = project(&[
            ("requirements.txt", "-e .\n"),
            (
                "pyproject.toml",
                "[build-system]\nrequires = [\"setuptools\"]\n",
            ),
        ]);
        assert!(install_key(&modern, &requirements(), &[], "i").is_ok());
    }

    #[test]
    fn a_project_installed_as_a_copy_is_keyed_on_all_of_it() {
        let files = project(&[("pyproject.toml", "[project]"), ("src/a.py", "1")]);
        let extra = Install::ProjectExtra("test".into());
        let first = install_key(&files, &extra, &[], "i").unwrap();
        let mut edited = files.clone();
        edited.insert("src/a.py".into(), b"2".to_vec());
        assert_ne!(install_key(&edited, &extra, &[], "i").unwrap(), first);
    }

    #[test]
    fn requirements_lines_are_read_as_pip_reads_them() {
        let refs = references(
            "-rinc.txt\n--requirement=b.txt\n-c\tc.txt\n-e./pkg\n-f ./w1 \\\n  # not a comment start\n--find-links=./w2\nname>=1 # ./not/a/path\n--find-links wheels\n-e git+https://x/y.git#egg=y\n-f https://example.com/simple\n",
        );
        assert_eq!(
            refs,
            [
                Reference::Include("inc.txt".into()),
                Reference::Include("b.txt".into()),
                Reference::Include("c.txt".into()),
                Reference::Link("./pkg".into()),
                Reference::Copy("./w1".into()),
                Reference::Copy("./w2".into()),
                Reference::Copy("wheels".into()),
            ]
        );
    }

    #[test]
    fn zip_files_read_what_the_upload_holds() {
        let zip = crate::testing::zip_files(&[
            ("requirements.txt", b"-f ./wheels\n"),
            ("wheels/a.whl", b"a"),
            ("./wheels/b.whl", b"b"),
        ]);
        let files = ZipFiles::new(&zip);
        assert_eq!(files.read("requirements.txt").unwrap(), b"-f ./wheels\n");
        assert_eq!(files.read("nothing"), None);
        let under: Vec<String> = files.under("wheels").into_iter().map(|(p, _)| p).collect();
        assert_eq!(under, ["wheels/a.whl", "wheels/b.whl"]);
        let map = project(&[
            ("requirements.txt", "-f ./wheels\n"),
            ("wheels/a.whl", "a"),
            ("wheels/b.whl", "b"),
        ]);
        assert_eq!(
            install_key(&files, &requirements(), &[], "i").unwrap(),
            install_key(&map, &requirements(), &[], "i").unwrap()
        );
    }
}
