//! The database flags every server-side binary takes (`ci-server`, `ci-controller`,
//! `ci-admin`): one definition, flattened into each one's command line.

use std::path::PathBuf;
use std::time::Duration;

use super::{DatabaseUrl, Db, DbError, PostgresSettings};
use crate::config::{default_db_path, parse_duration, DB_PATH_ENV};

/// Environment variable of `--database-url`.
pub const DATABASE_URL_ENV: &str = "CI_DATABASE_URL";

/// Which database to use and how to connect to it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DatabaseArgs {
    /// The database shared by the replicas, the controller and ci-admin: sqlite://PATH (the
    /// embedded default) or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, with libpq's
    /// options after `?` (sslmode=require|verify-ca|verify-full, sslrootcert=PATH, ...).
    /// Default: --db-path. The value is never printed with its password.
    #[arg(long, global = true, env = DATABASE_URL_ENV, hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// The SQLite database file: the same as --database-url sqlite://PATH [default:
    /// $XDG_DATA_HOME/ci/ci.db, else ~/.local/share/ci/ci.db].
    #[arg(long, global = true, env = DB_PATH_ENV, value_name = "PATH")]
    pub db_path: Option<PathBuf>,

    /// Most database connections this process opens (default: 8 for ci-server and
    /// ci-controller, 2 for ci-admin). On PostgreSQL, count every process against the server's
    /// max_connections.
    #[arg(long, global = true, env = "CI_DB_CONNECTIONS", value_name = "N")]
    pub db_connections: Option<u32>,

    /// PostgreSQL: the server cancels a statement of this process that runs longer (e.g. 30s;
    /// default: the server's statement_timeout). No statement of ci needs more than seconds.
    #[arg(long, global = true, env = "CI_DB_STATEMENT_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub db_statement_timeout: Option<Duration>,
}

/// Why the database flags were refused.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseArgsError {
    #[error(
        "both --database-url (or {DATABASE_URL_ENV}) and --db-path (or {DB_PATH_ENV}) are set: \
         give one (--db-path PATH is --database-url sqlite://PATH)"
    )]
    Both,
    #[error("--database-url: {0}")]
    Url(#[from] super::DatabaseUrlError),
}

impl DatabaseArgs {
    /// The flags naming the SQLite file `path` (tests, tools).
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            db_path: Some(path.into()),
            ..Self::default()
        }
    }

    /// The database to use: `--database-url`, else `--db-path`, else the default SQLite file.
    pub fn url(&self) -> Result<DatabaseUrl, DatabaseArgsError> {
        match (&self.database_url, &self.db_path) {
            (Some(_), Some(_)) => Err(DatabaseArgsError::Both),
            (Some(url), None) => Ok(url.parse()?),
            (None, Some(path)) => Ok(DatabaseUrl::Sqlite(path.clone())),
            (None, None) => Ok(DatabaseUrl::Sqlite(default_db_path())),
        }
    }

    /// The pool's settings, with `default_connections` unless `--db-connections` is given.
    pub fn settings(&self, default_connections: u32) -> PostgresSettings {
        PostgresSettings {
            max_connections: self.db_connections.unwrap_or(default_connections).max(1),
            statement_timeout: self.db_statement_timeout.filter(|t| !t.is_zero()),
        }
    }

    /// Opens the database ([`Db::open`]); the error names it (without a password).
    pub async fn open(&self, default_connections: u32) -> Result<Db, OpenError> {
        let url = self.url().map_err(OpenError::Args)?;
        Db::open(&url, &self.settings(default_connections))
            .await
            .map_err(|source| OpenError::Open { url, source })
    }
}

/// Why [`DatabaseArgs::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Args(DatabaseArgsError),
    #[error("cannot open the database {url}")]
    Open {
        url: DatabaseUrl,
        #[source]
        source: DbError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        db: DatabaseArgs,
    }

    #[test]
    fn the_url_comes_from_one_flag_and_both_are_refused() {
        let url = |args: &[&str]| Cli::parse_from(args).db.url();
        assert_eq!(
            url(&["x", "--db-path", "/tmp/a.db"]).unwrap(),
            DatabaseUrl::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            url(&["x", "--database-url", "sqlite:///tmp/b.db"]).unwrap(),
            DatabaseUrl::Sqlite("/tmp/b.db".into())
        );
        assert!(matches!(
            url(&["x", "--database-url", "postgres://u:secret@h/db"]).unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let both = url(&["x", "--db-path", "a.db", "--database-url", "sqlite://b.db"]);
        assert!(matches!(both, Err(DatabaseArgsError::Both)));
        let bad = url(&["x", "--database-url", "mysql://u:secret@h/db"]).unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }

    #[test]
    fn settings_take_the_binary_default_unless_given() {
        let cli = Cli::parse_from(["x", "--db-statement-timeout", "30s"]);
        let settings = cli.db.settings(8);
        assert_eq!(settings.max_connections, 8);
        assert_eq!(settings.statement_timeout, Some(Duration::from_secs(30)));
        let cli = Cli::parse_from(["x", "--db-connections", "3", "--db-statement-timeout", "0"]);
        let settings = cli.db.settings(8);
        assert_eq!(
            (settings.max_connections, settings.statement_timeout),
            (3, None)
        );
    }
}
