//! Defaults shared by every binary.

use std::path::PathBuf;

/// Environment variable naming the SQLite database (every server-side binary honours it: their
/// `--db-path` flags take it with `#[arg(env = DB_PATH_ENV)]`).
pub const DB_PATH_ENV: &str = "CI_DB_PATH";

/// The default database file: the same for `ci-server`, `ci-controller` and `ci-admin`, whatever
/// the working directory — `$XDG_DATA_HOME/ci/ci.db`, else `~/.local/share/ci/ci.db`.
pub fn default_db_path() -> PathBuf {
    data_dir_from(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .join("ci.db")
}

fn data_dir_from(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match (xdg_data_home, home) {
        (Some(xdg), _) if xdg.is_absolute() => xdg.join("ci"),
        (_, Some(home)) if home.is_absolute() => home.join(".local/share/ci"),
        _ => PathBuf::from("/var/lib/ci"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_absolute_and_ignores_relative_env() {
        assert!(default_db_path().is_absolute());
        assert_eq!(
            data_dir_from(Some("rel".into()), Some("/home/a".into())),
            PathBuf::from("/home/a/.local/share/ci")
        );
        assert_eq!(
            data_dir_from(Some("/x".into()), None),
            PathBuf::from("/x/ci")
        );
        assert_eq!(data_dir_from(None, None), PathBuf::from("/var/lib/ci"));
    }
}
