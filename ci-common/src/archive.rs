//! The one rule for names inside an uploaded project archive, used by the server when it
//! validates an upload and by the controller when it unpacks it, so that both always agree on
//! what an entry is called and whether it is allowed.

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
    fn modes() {
        assert_eq!(workspace_file_mode(Some(0o100755)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100750)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100744)), 0o755);
        assert_eq!(workspace_file_mode(Some(0o100644)), 0o644);
        assert_eq!(workspace_file_mode(Some(0o100600)), 0o644);
        assert_eq!(workspace_file_mode(None), 0o644);
    }
}
