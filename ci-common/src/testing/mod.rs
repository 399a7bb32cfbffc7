//! Helpers for tests, in one place for every crate's tests: a temporary database, and zip
//! archives made from a list of files or written byte by byte with chosen names, modes and
//! offsets.
//!
//! Compiled for this crate's own tests and with the feature `testing`, which other crates enable
//! only in their `[dev-dependencies]`, so that no release binary carries it.

use std::io::Write as _;

#[cfg(feature = "db")]
pub mod history;
pub mod postgres;

/// A fresh, migrated database in a temporary directory, deleted when this is dropped.
#[cfg(feature = "db")]
pub struct TempDb {
    pub pool: crate::db::SqlitePool,
    /// The database file (`ci.db` in `dir`).
    pub path: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

#[cfg(feature = "db")]
impl TempDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ci.db");
        let pool = crate::db::connect(&path, 4)
            .await
            .expect("a temporary database");
        Self { pool, path, dir }
    }

    /// Creates the user `name` (email `<name>@example.com`, lower case) with one API key.
    pub async fn user_with_key(
        &self,
        name: &str,
    ) -> (crate::db::users::User, crate::keys::SecretKey) {
        let email = format!("{}@example.com", name.to_lowercase());
        let user = crate::db::users::create(&self.pool, name, &email)
            .await
            .expect("create the user");
        let key = crate::keys::SecretKey::generate();
        crate::db::api_keys::create(&self.pool, user.id, "test", &key, None)
            .await
            .expect("create the key");
        (user, key)
    }
}

/// A fresh, migrated database on one backend, for tests that run on every backend
/// ([`backends`]).
#[cfg(feature = "db")]
pub enum Backend {
    Sqlite(TempDb),
    Postgres(sqlx::PgPool),
}

/// The backend's name, for assertion messages.
#[cfg(feature = "db")]
impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        })
    }
}

#[cfg(feature = "db")]
impl Backend {
    /// The database, as a binary holds it.
    pub fn db(&self) -> crate::db::Db {
        match self {
            Self::Sqlite(db) => crate::db::Db::Sqlite(db.pool.clone()),
            Self::Postgres(pool) => crate::db::Db::Postgres(pool.clone()),
        }
    }

    /// The database's pool, for the layer's functions.
    pub fn exec(&self) -> crate::db::Exec<'_> {
        match self {
            Self::Sqlite(db) => crate::db::Exec::SqlitePool(&db.pool),
            Self::Postgres(pool) => crate::db::Exec::PgPool(pool),
        }
    }
}

/// A fresh database on SQLite and one on PostgreSQL (a new database on this process's
/// throwaway cluster, [`postgres::Postgres::shared`]). Without PostgreSQL's server this fails
/// under `CI=true` and elsewhere gives SQLite's alone, saying so ([`postgres::available`]).
#[cfg(feature = "db")]
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite(TempDb::new().await)];
    if postgres::available() {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let url = postgres::Postgres::shared().fresh_database(&name);
        let settings = crate::db::PostgresSettings {
            max_connections: 4,
            statement_timeout: None,
        };
        let pool = crate::db::connect_postgres(&url, &settings)
            .await
            .expect("a PostgreSQL database");
        all.push(Backend::Postgres(pool));
    }
    all
}

/// A queued job of a new user on `db`, and the epoch of the controller lease (taken if no one
/// holds it): rows written with plain SQL, for tests on every backend of modules that need a job
/// while the jobs and lease modules work on SQLite alone.
#[cfg(feature = "db")]
pub async fn job_with_lease(db: &Backend) -> (crate::JobId, i64) {
    use crate::db::on_exec;
    let id = crate::JobId::new();
    let user = crate::db::users::create(db.exec(), "Ada", &format!("{id}@example.com"))
        .await
        .expect("create the user");
    let now = crate::db::now();
    on_exec!(db.exec(), |e| sqlx::query(
        "INSERT INTO jobs (id, user_id, created_at) VALUES ($1, $2, $3)"
    )
    .bind(id)
    .bind(user.id)
    .bind(now)
    .execute(e)
    .await
    .map(drop)
    .expect("insert the job"));
    let epoch: i64 = on_exec!(db.exec(), |e| sqlx::query_scalar(
        "INSERT INTO controller_lease (id, epoch, holder, acquired_at, heartbeat_at)
         VALUES (1, 1, 'testing', $1, $1)
         ON CONFLICT (id) DO UPDATE SET holder = 'testing'
         RETURNING epoch"
    )
    .bind(now)
    .fetch_one(e)
    .await
    .expect("take the lease"));
    (id, epoch)
}

/// Another controller takes the lease on `db`: the epoch [`job_with_lease`] gave is fenced off.
#[cfg(feature = "db")]
pub async fn take_over_lease(db: &Backend) {
    use crate::db::on_exec;
    on_exec!(db.exec(), |e| sqlx::query(
        "UPDATE controller_lease SET epoch = epoch + 1, holder = 'other'"
    )
    .execute(e)
    .await
    .map(drop)
    .expect("take the lease over"));
}

/// A fresh database: the directory that holds it (deleted when dropped) and its pool.
#[cfg(feature = "db")]
pub async fn temp_db() -> (tempfile::TempDir, crate::db::SqlitePool) {
    let db = TempDb::new().await;
    (db.dir, db.pool)
}

/// A job of a new user, claimed by a controller holding a fresh lease (the epoch is returned),
/// with the `test` task's steps planned (`install` and `test` for a project with a
/// requirements.txt) but none started: the state a controller starts a job's first step in.
#[cfg(feature = "db")]
pub async fn claimed_job_with_steps(pool: &crate::db::SqlitePool) -> (crate::db::jobs::Job, i64) {
    use crate::db::{jobs, lease, steps, users};
    let user = users::create(pool, "Ada", &format!("{}@example.com", crate::JobId::new()))
        .await
        .unwrap();
    let epoch = lease::acquire(pool, "testing").await.unwrap().epoch;
    jobs::create(pool, user.id, "test", b"zip").await.unwrap();
    let job = jobs::claim_next(pool, epoch, "img", "local")
        .await
        .unwrap()
        .unwrap();
    let root = crate::project::RootFiles::from_pairs([("requirements.txt", &b""[..])]);
    let (specs, _) =
        crate::step::test_task(&root, "img", &[], crate::project::Installer::Auto).unwrap();
    steps::plan(pool, job.id, epoch, &specs).await.unwrap();
    (job, epoch)
}

/// A deflated archive of `(name, contents)`; a name ending in `/` is a folder.
pub fn zip_files(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        if name.ends_with('/') {
            writer.add_directory(*name, options).expect("zip folder");
        } else {
            writer.start_file(*name, options).expect("zip entry");
            writer.write_all(data).expect("zip write");
        }
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A stored (uncompressed) archive written byte by byte, so that names and attributes can be
/// anything a hostile client sends: `(name, data, unix mode)`, each with its own local header.
/// `offsets`, when given, are the local header offsets the central directory points at instead
/// of the real ones (e.g. two entries sharing one header).
pub fn raw_zip(entries: &[(&[u8], &[u8], u32)], offsets: Option<&[u32]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut written = Vec::new();
    for (name, data, _) in entries {
        written.push(out.len() as u32);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(data);
    }
    let offsets = offsets.unwrap_or(&written);
    let cd_offset = out.len() as u32;
    let mut central = Vec::new();
    for ((name, data, mode), offset) in entries.iter().zip(offsets) {
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        // Made by version 2.0 on Unix (3), so that the mode in the external attributes counts.
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc32(data).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), as zip stores it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 check value of "123456789" (ISO-HDLC).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn raw_archives_read_back_with_their_names_modes_and_contents() {
        let zip = raw_zip(
            &[
                (b"src/", b"", 0o040755),
                (b"src/run.sh", b"echo hi\n", 0o100755),
            ],
            None,
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 2);
        assert!(archive.by_index(0).unwrap().is_dir());
        let mut script = archive.by_name("src/run.sh").unwrap();
        assert_eq!(script.unix_mode(), Some(0o100755));
        let mut text = String::new();
        script.read_to_string(&mut text).unwrap();
        assert_eq!(text, "echo hi\n");
    }

    #[test]
    fn zip_files_holds_files_and_folders() {
        let zip = zip_files(&[("tests/", b""), ("tests/test_a.py", b"x = 1\n")]);
        let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let names: Vec<_> = archive.file_names().collect();
        assert_eq!(names, ["tests/", "tests/test_a.py"]);
    }
}
