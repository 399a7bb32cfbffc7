//! The one rule for names inside an uploaded project archive, used by the server when it
//! validates an upload and by the controller when it unpacks it, so that both always agree on
//! what an entry is called and whether it is allowed.

use crate::project::{is_root_file, RootFiles};

/// The normalized, relative path of an archive entry (`./a//b/./c/` → `a/b/c`; the archive's root
/// folder itself, `./`, is the empty string), or why the name is unsafe.
///
/// Refused: empty names, NUL and other control characters, backslashes, absolute paths, drive
/// letters (`C:`) and `..` components. Names are compared after normalization, so `./a.py` and
/// `a.py` are the same entry.
///
/// # Errors
///
/// A short description of the problem, e.g. "`..` component", for the user's error message.
pub fn entry_path(name: &str) -> Result<String, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.contains('\0') {
        return Err("NUL byte in the name");
    }
    if name.contains('\\') {
        return Err("backslash in the name");
    }
    if name.starts_with('/') {
        return Err("absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("drive letter");
    }
    if name.chars().any(char::is_control) {
        return Err("control character in the name");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` component"),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Reads only the project's root configuration files ([`is_root_file`]) from a zip archive,
/// skipping entries whose names break [`entry_path`] (validation reports those).
///
/// # Errors
///
/// The archive is not a readable zip, or a root file cannot be decompressed.
pub fn root_files(zip: &[u8]) -> Result<RootFiles, zip::result::ZipError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
    let mut root = RootFiles::default();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let Ok(path) = entry_path(entry.name()) else {
            continue;
        };
        if entry.is_file() && is_root_file(&path, entry.size()) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)?;
            root.insert(&path, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(root)
}

/// Whether a Unix mode has any executable bit. Files keep it on their way from the project
/// folder (zip) into the job's workspace (tar): 0755 when set, 0644 otherwise.
pub fn is_executable(mode: u32) -> bool {
    mode & 0o111 != 0
}

/// The mode a file gets in the job's workspace, from its mode in the project folder.
pub fn workspace_file_mode(mode: Option<u32>) -> u32 {
    if mode.is_some_and(is_executable) {
        0o755
    } else {
        0o644
    }
}

/// The mode of every folder in the job's workspace.
pub const WORKSPACE_DIR_MODE: u32 = 0o755;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(entry_path("./tests/test_a.py").unwrap(), "tests/test_a.py");
        assert_eq!(entry_path("a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(entry_path("./").unwrap(), "");
        assert_eq!(entry_path("données/é.txt").unwrap(), "données/é.txt");
        assert_eq!(entry_path(".gitkeep").unwrap(), ".gitkeep");
    }

    #[test]
    fn unsafe_names_say_why() {
        for (name, problem) in [
            ("", "empty"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("C:/x.py", "drive letter"),
            ("a\\b", "backslash"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
        ] {
            let err = entry_path(name).unwrap_err();
            assert!(err.contains(problem), "{name:?}: {err}");
        }
    }

    #[test]
    fn root_files_are_read_without_unpacking_the_rest() {
        let zip = crate::testing::zip_files(&[
            ("./pyproject.toml", b"[tool.ci]\nimage = 'x'\n"),
            ("pkg/pyproject.toml", b"nested"),
            ("tests/test_a.py", b""),
        ]);
        let root = root_files(&zip).unwrap();
        assert_eq!(root.get("pyproject.toml"), Some("[tool.ci]\nimage = 'x'\n"));
        assert!(!root.has("tests/test_a.py"));
        assert!(root_files(b"not a zip").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(workspace_file_mode(Some(0o100755)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100750)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100744)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100644)), 0o644);
        assert_eq!(workspace_file_mode(Some(0o100600)), 0o644);
        assert_eq!(workspace_file_mode(None), 0o644);
    }
}
