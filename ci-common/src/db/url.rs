//! Which database a binary uses: `--database-url` (env `CI_DATABASE_URL`), an SQLite file or a
//! PostgreSQL server.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A database location as the operator writes it:
///
/// - `sqlite://PATH` (or `sqlite:PATH`): the SQLite file at PATH, created if missing; a relative
///   PATH is relative to the working directory, `sqlite:///var/lib/ci/ci.db` is absolute. What
///   `--db-path PATH` means.
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]` (or `postgresql://`): a
///   PostgreSQL server, with libpq's options (`sslmode`, `sslrootcert`, `options`, ...) as sqlx
///   reads them.
///
/// Its `Display` hides a password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Why a `--database-url` was refused; says what is accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DatabaseUrlError(String);

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            // Options after `?` (sqlx's `?mode=`) are not ours: the file is always opened the same
            // way.
            if path.is_empty() || path.contains('?') {
                return Err(DatabaseUrlError(format!(
                    "{s:?}: an SQLite URL is sqlite://PATH, the database file (e.g. \
                     sqlite:///var/lib/ci/ci.db), without options"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err(DatabaseUrlError(format!(
            "\"{}\" is not a database URL: use sqlite://PATH (the embedded default) or \
             postgres://USER@HOST:PORT/DATABASE",
            Redacted(s)
        )))
    }
}

impl DatabaseUrl {
    /// The URL as given, password included: for handing to a process that connects, never for
    /// a message or a log line (that is what `Display` is for).
    pub fn url_with_password(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file, or `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => write!(f, "{}", Redacted(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A URL with the password of its `user:password@` part replaced by `***`.
struct Redacted<'a>(&'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return f.write_str(url);
        };
        let authority_end = url[scheme_end..]
            .find(['/', '?'])
            .map_or(url.len(), |i| scheme_end + i);
        let authority = &url[scheme_end..authority_end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => write!(
                    f,
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &authority[..colon],
                    &url[scheme_end + at..]
                ),
                None => f.write_str(url),
            },
            None => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        let url: DatabaseUrl = "sqlite:///var/lib/ci/ci.db".parse().unwrap();
        assert_eq!(url, DatabaseUrl::Sqlite("/var/lib/ci/ci.db".into()));
        assert_eq!(url.to_string(), "sqlite:///var/lib/ci/ci.db");
        let relative: DatabaseUrl = "sqlite://data/ci.db".parse().unwrap();
        assert_eq!(relative.sqlite_path(), Some("data/ci.db".as_ref()));
        let short: DatabaseUrl = "sqlite:ci.db".parse().unwrap();
        assert_eq!(short.sqlite_path(), Some("ci.db".as_ref()));
        for bad in ["sqlite://", "sqlite:", "sqlite://ci.db?mode=ro"] {
            let err = bad.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(err.contains("sqlite://PATH"), "{bad}: {err}");
        }
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_shown_without_their_password() {
        let url: DatabaseUrl = "postgres://ci:s3cret@db.internal:5432/ci?sslmode=verify-full"
            .parse()
            .unwrap();
        assert!(matches!(&url, DatabaseUrl::Postgres(u) if u.contains("s3cret")));
        assert_eq!(url.sqlite_path(), None);
        let shown = url.to_string();
        assert_eq!(
            shown,
            "postgres://ci:***@db.internal:5432/ci?sslmode=verify-full"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let no_password: DatabaseUrl = "postgresql://ci@127.0.0.1/ci".parse().unwrap();
        assert_eq!(no_password.to_string(), "postgresql://ci@127.0.0.1/ci");
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_accepted() {
        let err = "mysql://root:pw@h/ci"
            .parse::<DatabaseUrl>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sqlite://PATH") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("pw@"), "the password is not repeated: {err}");
        assert!("/var/lib/ci/ci.db".parse::<DatabaseUrl>().is_err());
    }
}
