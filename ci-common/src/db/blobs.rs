//! The one blob store: a job's named binary data (JUnit reports, artifacts, later large logs).
//! The `blobs` table holds each blob's metadata, `blob_chunks` its bytes in [`CHUNK_BYTES`]
//! chunks. Callers know names, metadata and chunks, never tables, so that an object store could
//! replace this module without touching them. Names are checked ([`check_name`]) and sizes capped
//! ([`BlobCaps`]) here and nowhere else.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Acquire as _, Connection as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{lease, on_exec, BeginWrite as _, Db, DbError, Exec};
use crate::JobId;

/// Bytes per stored chunk; every chunk of a blob but the last is exactly this long.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The longest blob name, in bytes.
pub const NAME_MAX_BYTES: usize = 200;

/// The longest content type, in bytes.
pub const CONTENT_TYPE_MAX_BYTES: usize = 255;

/// What a blob without a content type is served as.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// How much a job may store, in bytes: one blob, and all of its blobs together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobCaps {
    /// Largest single blob (bytes).
    pub max_blob_bytes: u64,
    /// Largest total of one job's blobs (bytes), the replaced blob not counted.
    pub max_job_bytes: u64,
}

impl Default for BlobCaps {
    /// 64 MiB per blob, 256 MiB per job.
    fn default() -> Self {
        Self {
            max_blob_bytes: 64 << 20,
            max_job_bytes: 256 << 20,
        }
    }
}

impl BlobCaps {
    /// Whether a blob of `size` bytes fits beside `used` bytes of the job's other blobs.
    fn check(&self, size: u64, used: u64) -> Result<(), BlobError> {
        if size > self.max_blob_bytes {
            return Err(BlobError::TooLarge {
                limit: self.max_blob_bytes,
            });
        }
        if used.saturating_add(size) > self.max_job_bytes {
            return Err(BlobError::JobQuota {
                limit: self.max_job_bytes,
                used,
            });
        }
        Ok(())
    }
}

/// A stored blob's metadata, as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobMeta {
    pub job_id: JobId,
    /// `/`-separated, e.g. `reports/test.jsonl` (see [`check_name`]).
    pub name: String,
    /// The whole blob, in bytes.
    pub size: i64,
    /// SHA-256 of the whole blob, lower-case hex (64 characters).
    pub sha256: String,
    /// A MIME type, e.g. `application/xml`; [`DEFAULT_CONTENT_TYPE`] when none was given.
    pub content_type: String,
    /// How many chunks hold it: indexes `0..chunks`, each [`CHUNK_BYTES`] long but the last.
    pub chunks: i64,
    /// When it was stored (UTC).
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "the blob is larger than the limit of {limit} bytes per blob: store a smaller one \
         (compress it, or leave out what nobody reads) or ask the operator to raise the limit"
    )]
    TooLarge { limit: u64 },
    #[error(
        "the job's blobs would take more than its limit of {limit} bytes ({used} bytes are \
         already stored): store less, delete blobs the job no longer needs, or ask the operator \
         to raise the limit"
    )]
    JobQuota { limit: u64, used: u64 },
    #[error(
        "invalid blob name {0:?}: use 1 to {NAME_MAX_BYTES} bytes of `/`-separated segments of \
         letters, digits, `.`, `_` and `-`, without an empty, `.` or `..` segment \
         (e.g. reports/test.jsonl)"
    )]
    BadName(String),
    #[error(
        "invalid content type {0:?}: use a MIME type of up to {CONTENT_TYPE_MAX_BYTES} printable \
         ASCII characters, e.g. application/xml"
    )]
    BadContentType(String),
    #[error("job {0} does not exist (any more): there is no job to store the blob with")]
    NoJob(JobId),
    #[error("cannot read the blob's data from its source")]
    Read(#[source] std::io::Error),
    #[error(
        "cannot spool the blob to a temporary file in {dir}: check that the directory is \
         writable and has room (TMPDIR chooses another)"
    )]
    Spool {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the blob {name} was replaced or deleted while it was read: read it again")]
    Changed { name: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for BlobError {
    fn from(err: sqlx::Error) -> Self {
        BlobError::Db(err.into())
    }
}

/// Checks a blob name: 1 to [`NAME_MAX_BYTES`] bytes of `/`-separated segments of
/// `[A-Za-z0-9._-]`, none of them empty, `.` or `..` (so a name is also a safe relative path).
///
/// # Errors
///
/// [`BlobError::BadName`] with the name.
pub fn check_name(name: &str) -> Result<(), BlobError> {
    let segment_ok = |segment: &str| {
        !matches!(segment, "" | "." | "..")
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if (1..=NAME_MAX_BYTES).contains(&name.len()) && name.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(BlobError::BadName(name.to_owned()))
    }
}

/// The content type to store: [`DEFAULT_CONTENT_TYPE`] for an empty one, else a valid HTTP
/// header value of printable ASCII, so it can be served as it is.
fn content_type(given: &str) -> Result<&str, BlobError> {
    let given = given.trim();
    if given.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE);
    }
    if given.len() <= CONTENT_TYPE_MAX_BYTES && given.bytes().all(|b| matches!(b, b' '..=b'~')) {
        Ok(given)
    } else {
        Err(BlobError::BadContentType(given.to_owned()))
    }
}

/// Stores the blob `name` of `job` from `data` (read to its end), replacing a blob of that name,
/// and returns its metadata. `content_type` is a MIME type (empty for
/// [`DEFAULT_CONTENT_TYPE`]). With `epoch`, the write is fenced by the controller lease.
///
/// The data is read in [`CHUNK_BYTES`] chunks and hashed as it comes, never whole in memory: a
/// blob of more than one chunk is spooled to a temporary file first. Only then does one
/// `BEGIN IMMEDIATE` transaction check the lease and the caps again, delete the old blob and
/// insert the new one from the spool. SQLite has one writer at a time, so other writers (the
/// controller's log lines, other jobs) wait for this transaction; spooling first makes that wait
/// the time to copy at most `max_blob_bytes` from a local file, not the time the source takes to
/// produce the data (a container, a network upload). Readers are never blocked (WAL). On
/// PostgreSQL the transaction is a plain `BEGIN` (see [`super::BeginWrite`]): writers wait for
/// each other only on the rows they touch.
///
/// # Errors
///
/// - [`BlobError::BadName`] / [`BlobError::BadContentType`] before anything is read;
/// - [`BlobError::TooLarge`] / [`BlobError::JobQuota`] as soon as the data passes a cap
///   (the rest is not read);
/// - [`BlobError::NoJob`] when the job does not exist;
/// - [`BlobError::Read`] / [`BlobError::Spool`] when reading the data or the temporary file fails;
/// - [`BlobError::Db`] with [`DbError::LeaseLost`] when `epoch` no longer holds the lease, or a
///   query's failure.
///
/// On any error nothing is stored and the previous blob of that name, if any, is kept.
pub async fn put(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: Option<i64>,
    name: &str,
    content_type: &str,
    mut data: impl AsyncRead + Unpin,
    caps: &BlobCaps,
) -> Result<BlobMeta, BlobError> {
    check_name(name)?;
    let content_type = self::content_type(content_type)?;
    let mut ex = ex.into();
    // The caps are checked while reading (to stop early) and again in the transaction (another
    // blob of the job may have been stored meanwhile).
    let used = used_by_others(ex.reborrow(), job, name).await?;
    caps.check(0, used)?;
    let mut spool = Spool::read(&mut data, caps, used).await?;

    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        if let Some(epoch) = epoch {
            lease::check(&mut *tx, epoch).await?;
        }
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(BlobError::NoJob(job));
        }
        caps.check(spool.size, used_by_others(&mut *tx, job, name).await?)?;
        sqlx::query("DELETE FROM blobs WHERE job_id = $1 AND name = $2")
            .bind(job)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let meta: BlobMeta = sqlx::query_as(
            "INSERT INTO blobs (job_id, name, size, sha256, content_type, chunks, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING job_id, name, size, sha256, content_type, chunks, created_at",
        )
        .bind(job)
        .bind(name)
        .bind(i64::try_from(spool.size).expect("a blob within its cap fits i64"))
        .bind(&spool.sha256)
        .bind(content_type)
        .bind(spool.chunks)
        .bind(super::now())
        .fetch_one(&mut *tx)
        .await?;
        let mut idx: i64 = 0;
        while let Some(chunk) = spool.next_chunk().await? {
            sqlx::query(
                "INSERT INTO blob_chunks (job_id, name, idx, data) VALUES ($1, $2, $3, $4)",
            )
            .bind(job)
            .bind(name)
            .bind(idx)
            .bind(chunk)
            .execute(&mut *tx)
            .await?;
            idx += 1;
        }
        tx.commit().await?;
        Ok(meta)
    })
}

/// Bytes stored by `job`'s blobs other than `name` (which a put replaces).
async fn used_by_others(ex: impl Into<Exec<'_>>, job: JobId, name: &str) -> Result<u64, DbError> {
    // PostgreSQL's SUM of a BIGINT is a NUMERIC: cast back.
    let used: i64 = on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs
         WHERE job_id = $1 AND name <> $2",
    )
    .bind(job)
    .bind(name)
    .fetch_one(e)
    .await?);
    Ok(u64::try_from(used).unwrap_or(0))
}

/// A blob read from its source and hashed, waiting to be stored: in memory when it fits one
/// chunk, else in a temporary file.
struct Spool {
    size: u64,
    sha256: String,
    chunks: i64,
    store: SpoolStore,
    /// One chunk: what is read and written at a time.
    buf: Vec<u8>,
    /// Chunks handed out by [`Spool::next_chunk`].
    taken: i64,
}

enum SpoolStore {
    /// The whole blob, shorter than a chunk, is in `buf`.
    Memory,
    File(SpoolFile),
}

impl Spool {
    /// Reads `data` to its end in chunks, hashing it and checking the caps as it grows.
    async fn read(
        data: &mut (impl AsyncRead + Unpin),
        caps: &BlobCaps,
        used: u64,
    ) -> Result<Self, BlobError> {
        let mut buf = vec![0; CHUNK_BYTES];
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunks = 0i64;
        let mut file: Option<SpoolFile> = None;
        loop {
            let n = fill(data, &mut buf).await.map_err(BlobError::Read)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            caps.check(size, used)?;
            hasher.update(&buf[..n]);
            chunks += 1;
            if n < CHUNK_BYTES && file.is_none() {
                // The whole blob is this one short chunk: no file needed.
                buf.truncate(n);
                break;
            }
            let file = match &mut file {
                Some(file) => file,
                None => file.insert(SpoolFile::create().await?),
            };
            file.write(&buf[..n]).await?;
        }
        let store = match file {
            Some(mut file) => {
                file.rewind().await?;
                SpoolStore::File(file)
            }
            None => {
                if chunks == 0 {
                    buf.clear();
                }
                SpoolStore::Memory
            }
        };
        Ok(Self {
            size,
            sha256: format!("{:x}", hasher.finalize()),
            chunks,
            store,
            buf,
            taken: 0,
        })
    }

    /// The next chunk to store, in order, or `None` after the last.
    async fn next_chunk(&mut self) -> Result<Option<&[u8]>, BlobError> {
        if self.taken == self.chunks {
            return Ok(None);
        }
        let offset = self.taken as u64 * CHUNK_BYTES as u64;
        let len = usize::try_from((self.size - offset).min(CHUNK_BYTES as u64))
            .expect("a chunk's length fits usize");
        if let SpoolStore::File(file) = &mut self.store {
            self.buf.resize(len, 0);
            file.read_exact(&mut self.buf).await?;
        }
        self.taken += 1;
        Ok(Some(&self.buf[..len]))
    }
}

/// Reads from `data` until `buf` is full or the data ends; returns how many bytes were read.
async fn fill(data: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A temporary file in the system's temporary directory, removed when dropped (on Unix it has
/// no name at all once open, so not even a crash leaves it behind).
struct SpoolFile {
    file: tokio::fs::File,
    path: Option<PathBuf>,
}

impl SpoolFile {
    async fn create() -> Result<Self, BlobError> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("ci-blob-{}.tmp", uuid::Uuid::new_v4()));
        let spool_err = |source| BlobError::Spool {
            dir: dir.clone(),
            source,
        };
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(spool_err)?;
        let mut spool = Self {
            file,
            path: Some(path),
        };
        if cfg!(unix) {
            if let Some(path) = spool.path.take() {
                tokio::fs::remove_file(&path).await.map_err(spool_err)?;
            }
        }
        Ok(spool)
    }

    fn error(&self, source: std::io::Error) -> BlobError {
        BlobError::Spool {
            dir: std::env::temp_dir(),
            source,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let written = self.file.write_all(bytes).await;
        written.map_err(|e| self.error(e))
    }

    async fn rewind(&mut self) -> Result<(), BlobError> {
        let flushed = self.file.flush().await;
        flushed.map_err(|e| self.error(e))?;
        let rewound = self.file.seek(SeekFrom::Start(0)).await;
        rewound.map(|_| ()).map_err(|e| self.error(e))
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), BlobError> {
        let read = self.file.read_exact(buf).await;
        read.map(|_| ()).map_err(|e| self.error(e))
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

const META_COLUMNS: &str = "job_id, name, size, sha256, content_type, chunks, created_at";

/// The metadata of `job`'s blob `name`, if it is stored.
pub async fn get_meta(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    name: &str,
) -> Result<Option<BlobMeta>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM blobs WHERE job_id = $1 AND name = $2"
    ))
    .bind(job)
    .bind(name)
    .fetch_optional(e)
    .await?))
}

/// `job`'s blobs, by name.
pub async fn list(ex: impl Into<Exec<'_>>, job: JobId) -> Result<Vec<BlobMeta>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM blobs WHERE job_id = $1 ORDER BY name"
    ))
    .bind(job)
    .fetch_all(e)
    .await?))
}

/// Chunk `idx` (from 0 to the meta's `chunks - 1`) of `job`'s blob `name`: [`CHUNK_BYTES`] bytes,
/// fewer for the last; `None` when there is no such chunk. To read a whole blob that may be
/// replaced meanwhile, use [`open`], which notices.
pub async fn chunk(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    name: &str,
    idx: i64,
) -> Result<Option<Vec<u8>>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT data FROM blob_chunks WHERE job_id = $1 AND name = $2 AND idx = $3",
    )
    .bind(job)
    .bind(name)
    .bind(idx)
    .fetch_optional(e)
    .await?))
}

/// The whole of `job`'s blob `name` in memory, if it is stored: for small blobs (a report to
/// parse); stream larger ones with [`open`].
pub async fn read_all(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    name: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    // One read transaction: the metadata and the chunks are of the same blob. SQLite's
    // transaction reads one snapshot; PostgreSQL's does only at REPEATABLE READ (its default,
    // READ COMMITTED, takes a new snapshot per statement).
    let ex = ex.into();
    let begin = match ex {
        Exec::SqlitePool(_) | Exec::Sqlite(_) => "BEGIN",
        Exec::PgPool(_) | Exec::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
    };
    let read = on_exec!(ex, |e| {
        let conn = &mut *e.acquire().await?;
        let mut tx = conn.begin_with(begin).await?;
        let Some(meta) = get_meta(&mut *tx, job, name).await? else {
            return Ok(None);
        };
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM blob_chunks WHERE job_id = $1 AND name = $2 ORDER BY idx",
        )
        .bind(job)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        (meta, chunks)
    });
    let (meta, chunks) = read;
    let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
    for chunk in chunks {
        data.extend_from_slice(&chunk);
    }
    Ok(Some(data))
}

/// Deletes `job`'s blob `name` with its chunks; with `epoch`, fenced by the controller lease.
/// Returns whether there was one.
///
/// # Errors
///
/// [`DbError::LeaseLost`] when `epoch` no longer holds the lease, or a query's failure.
pub async fn delete(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: Option<i64>,
    name: &str,
) -> Result<bool, DbError> {
    let deleted = on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        if let Some(epoch) = epoch {
            lease::check(&mut *tx, epoch).await?;
        }
        let done = sqlx::query("DELETE FROM blobs WHERE job_id = $1 AND name = $2")
            .bind(job)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        done
    });
    Ok(deleted == 1)
}

/// Opens `job`'s blob `name` to be read chunk by chunk (to stream it), or `None` when it is not
/// stored. Each chunk is read on its own: no transaction stays open between chunks. The reader
/// keeps the database's pool (not a connection, which it would hold between chunks).
pub async fn open(
    db: impl Into<Db>,
    job: JobId,
    name: &str,
) -> Result<Option<BlobReader>, DbError> {
    let db = db.into();
    Ok(get_meta(db.exec(), job, name)
        .await?
        .map(|meta| BlobReader {
            db,
            meta,
            next: 0,
            skip: 0,
            remaining: None,
        }))
}

/// Deletes the blobs whose names start with `prefix` (e.g. `artifacts/`) stored longer than
/// `older_than` ago, with their chunks (every job's). Returns how many.
pub async fn expire(
    ex: impl Into<Exec<'_>>,
    prefix: &str,
    older_than: Duration,
) -> Result<u64, DbError> {
    let Some(before) = chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
    else {
        return Ok(0);
    };
    Ok(on_exec!(ex, |e| sqlx::query(
        "DELETE FROM blobs WHERE substr(name, 1, length($1)) = $1 AND created_at < $2"
    )
    .bind(prefix)
    .bind(super::timestamp(before))
    .execute(e)
    .await?
    .rows_affected()))
}

/// A stored blob being read chunk by chunk (see [`open`]).
pub struct BlobReader {
    db: Db,
    meta: BlobMeta,
    next: i64,
    /// Bytes of the next chunk before the range starts.
    skip: usize,
    /// Bytes of the range still to give (`None`: to the end).
    remaining: Option<u64>,
}

impl BlobReader {
    /// The metadata of the blob as it was opened.
    pub fn meta(&self) -> &BlobMeta {
        &self.meta
    }

    /// Limits the reader to the bytes `start..=end` of the blob (an HTTP range request: the
    /// caller has checked `start <= end < size`); the next chunk starts at `start`.
    pub fn range(&mut self, start: u64, end: u64) {
        self.next = (start / CHUNK_BYTES as u64) as i64;
        self.skip = (start % CHUNK_BYTES as u64) as usize;
        self.remaining = Some(end.saturating_sub(start) + 1);
    }

    /// The next chunk ([`CHUNK_BYTES`] bytes, fewer for the last, cut to the range when one was
    /// set), or `None` after the last.
    ///
    /// # Errors
    ///
    /// [`BlobError::Changed`] when the blob was replaced by other contents or deleted since it
    /// was opened (the chunks read so far belong to the old one); [`BlobError::Db`] when a query
    /// fails.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        if self.next >= self.meta.chunks || self.remaining == Some(0) {
            return Ok(None);
        }
        // The blob's row and its chunk in one statement, so the chunk is of the same contents.
        let data: Option<Vec<u8>> = on_exec!(self.db.exec(), |e| sqlx::query_scalar(
            "SELECT c.data FROM blob_chunks c
             JOIN blobs b ON b.job_id = c.job_id AND b.name = c.name
             WHERE c.job_id = $1 AND c.name = $2 AND c.idx = $3 AND b.sha256 = $4 AND b.size = $5",
        )
        .bind(self.meta.job_id)
        .bind(&self.meta.name)
        .bind(self.next)
        .bind(&self.meta.sha256)
        .bind(self.meta.size)
        .fetch_optional(e)
        .await?);
        let Some(mut data) = data else {
            return Err(BlobError::Changed {
                name: self.meta.name.clone(),
            });
        };
        self.next += 1;
        if self.skip > 0 {
            data.drain(..self.skip.min(data.len()));
            self.skip = 0;
        }
        if let Some(left) = self.remaining.as_mut() {
            data.truncate((*left).min(data.len() as u64) as usize);
            *left -= data.len() as u64;
        }
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sha256_hex;
    use crate::testing::{backends, Backend};

    /// A job (only its id here) on a test's database.
    struct Job {
        id: JobId,
    }

    /// A queued job of a new user on `db`, and the epoch of the lease a controller holds.
    async fn claimed_job_with_steps(db: &Backend) -> (Job, i64) {
        let (id, epoch) = crate::testing::job_with_lease(db).await;
        (Job { id }, epoch)
    }

    /// `db`'s pool, for [`open`].
    fn pool(db: &Backend) -> Db {
        match db {
            Backend::Sqlite(db) => Db::from(&db.pool),
            Backend::Postgres(pool) => Db::from(pool),
        }
    }

    /// `len` bytes that differ from chunk to chunk and within one.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / CHUNK_BYTES) as u8 ^ seed)
            .collect()
    }

    #[tokio::test]
    async fn blobs_of_a_prefix_expire_with_their_chunks() {
        for db in backends().await {
            blobs_of_a_prefix_expire_with_their_chunks_on(&db).await;
        }
    }

    async fn blobs_of_a_prefix_expire_with_their_chunks_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let caps = BlobCaps::default();
        for name in ["artifacts/dist/a.whl", "reports/test.jsonl"] {
            put(
                db.exec(),
                job.id,
                Some(epoch),
                name,
                DEFAULT_CONTENT_TYPE,
                &pattern(CHUNK_BYTES + 1, 1)[..],
                &caps,
            )
            .await
            .unwrap();
        }
        assert_eq!(
            expire(db.exec(), "artifacts/", Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            expire(db.exec(), "artifacts/", Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        let left: Vec<String> = list(db.exec(), job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(left, ["reports/test.jsonl"]);
        assert_eq!(
            count(db, "blob_chunks").await,
            2,
            "the expired blob's chunks went with it"
        );
    }

    #[tokio::test]
    async fn a_range_reads_exactly_its_bytes_across_chunks() {
        for db in backends().await {
            a_range_reads_exactly_its_bytes_across_chunks_on(&db).await;
        }
    }

    async fn a_range_reads_exactly_its_bytes_across_chunks_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let data = pattern(3 * CHUNK_BYTES + 100, 7);
        put(
            db.exec(),
            job.id,
            Some(epoch),
            "a/b.bin",
            "application/octet-stream",
            data.as_slice(),
            &BlobCaps::default(),
        )
        .await
        .unwrap();
        let size = data.len() as u64;
        for (start, end) in [
            (0, 0),
            (10, 20),
            (CHUNK_BYTES as u64 - 3, CHUNK_BYTES as u64 + 3),
            (5, size - 1),
            (size - 1, size - 1),
            (CHUNK_BYTES as u64, 2 * CHUNK_BYTES as u64 - 1),
        ] {
            let mut reader = open(pool(db), job.id, "a/b.bin").await.unwrap().unwrap();
            reader.range(start, end);
            let mut got = Vec::new();
            while let Some(chunk) = reader.next_chunk().await.unwrap() {
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, &data[start as usize..=end as usize], "{start}-{end}");
        }
    }

    async fn count(db: &Backend, table: &str) -> i64 {
        on_exec!(db.exec(), |e| sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table}"
        ))
        .fetch_one(e)
        .await
        .unwrap())
    }

    #[tokio::test]
    async fn a_multi_chunk_blob_reads_back_byte_exact_with_its_sha256() {
        for db in backends().await {
            a_multi_chunk_blob_reads_back_byte_exact_with_its_sha256_on(&db).await;
        }
    }

    async fn a_multi_chunk_blob_reads_back_byte_exact_with_its_sha256_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let data = pattern(600 * 1024, 0);
        let caps = BlobCaps::default();
        let meta = put(
            db.exec(),
            job.id,
            Some(epoch),
            "artifacts/wheel.bin",
            "",
            &data[..],
            &caps,
        )
        .await
        .unwrap();
        assert_eq!(meta.size, 600 * 1024);
        assert_eq!(meta.chunks, 3);
        assert_eq!(meta.sha256, sha256_hex(&data));
        assert_eq!(meta.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(
            get_meta(db.exec(), job.id, "artifacts/wheel.bin")
                .await
                .unwrap(),
            Some(meta.clone())
        );
        assert_eq!(
            read_all(db.exec(), job.id, "artifacts/wheel.bin")
                .await
                .unwrap(),
            Some(data.clone())
        );
        let last = chunk(db.exec(), job.id, "artifacts/wheel.bin", 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last, &data[2 * CHUNK_BYTES..]);
        assert_eq!(
            chunk(db.exec(), job.id, "artifacts/wheel.bin", 3)
                .await
                .unwrap(),
            None
        );

        let mut reader = open(pool(db), job.id, "artifacts/wheel.bin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reader.meta(), &meta);
        let mut streamed = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            sizes.push(chunk.len());
            streamed.extend_from_slice(&chunk);
        }
        assert_eq!(
            sizes,
            [CHUNK_BYTES, CHUNK_BYTES, 600 * 1024 - 2 * CHUNK_BYTES]
        );
        assert_eq!(streamed, data);
    }

    #[tokio::test]
    async fn small_empty_and_exactly_one_chunk_blobs_round_trip() {
        for db in backends().await {
            small_empty_and_exactly_one_chunk_blobs_round_trip_on(&db).await;
        }
    }

    async fn small_empty_and_exactly_one_chunk_blobs_round_trip_on(db: &Backend) {
        let (job, _) = claimed_job_with_steps(db).await;
        let caps = BlobCaps::default();
        for (name, len, chunks) in [
            ("empty", 0, 0),
            ("small.json", 17, 1),
            ("one", CHUNK_BYTES, 1),
            ("one-more", CHUNK_BYTES + 1, 2),
        ] {
            let data = pattern(len, 7);
            let meta = put(
                db.exec(),
                job.id,
                None,
                name,
                "application/json",
                &data[..],
                &caps,
            )
            .await
            .unwrap();
            assert_eq!((meta.size, meta.chunks), (len as i64, chunks), "{name}");
            assert_eq!(meta.sha256, sha256_hex(&data), "{name}");
            assert_eq!(
                read_all(db.exec(), job.id, name).await.unwrap(),
                Some(data),
                "{name}"
            );
        }
        let names: Vec<String> = list(db.exec(), job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["empty", "one", "one-more", "small.json"]);
        assert_eq!(read_all(db.exec(), job.id, "missing").await.unwrap(), None);
        assert!(open(pool(db), job.id, "missing").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_put_replaces_the_blob_of_the_same_name_and_a_reader_notices() {
        for db in backends().await {
            a_put_replaces_the_blob_of_the_same_name_and_a_reader_notices_on(&db).await;
        }
    }

    async fn a_put_replaces_the_blob_of_the_same_name_and_a_reader_notices_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let caps = BlobCaps::default();
        let first = pattern(3 * CHUNK_BYTES, 1);
        put(
            db.exec(),
            job.id,
            Some(epoch),
            "r/x",
            "a/b",
            &first[..],
            &caps,
        )
        .await
        .unwrap();
        let mut reader = open(pool(db), job.id, "r/x").await.unwrap().unwrap();
        assert_eq!(
            reader.next_chunk().await.unwrap().unwrap(),
            &first[..CHUNK_BYTES]
        );

        let second = pattern(100, 2);
        let meta = put(
            db.exec(),
            job.id,
            Some(epoch),
            "r/x",
            "text/plain",
            &second[..],
            &caps,
        )
        .await
        .unwrap();
        assert_eq!((meta.size, meta.content_type.as_str()), (100, "text/plain"));
        assert_eq!(
            read_all(db.exec(), job.id, "r/x").await.unwrap(),
            Some(second)
        );
        assert_eq!(list(db.exec(), job.id).await.unwrap(), [meta]);
        assert_eq!(count(db, "blob_chunks").await, 1, "the old chunks are gone");
        let err = reader.next_chunk().await.unwrap_err();
        assert!(matches!(err, BlobError::Changed { .. }), "{err:?}");

        assert!(delete(db.exec(), job.id, Some(epoch), "r/x").await.unwrap());
        assert!(!delete(db.exec(), job.id, Some(epoch), "r/x").await.unwrap());
        assert_eq!(count(db, "blob_chunks").await, 0);
    }

    #[tokio::test]
    async fn both_caps_refuse_and_leave_nothing_behind() {
        for db in backends().await {
            both_caps_refuse_and_leave_nothing_behind_on(&db).await;
        }
    }

    async fn both_caps_refuse_and_leave_nothing_behind_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let caps = BlobCaps {
            max_blob_bytes: 2 * CHUNK_BYTES as u64,
            max_job_bytes: 3 * CHUNK_BYTES as u64,
        };
        let big = pattern(2 * CHUNK_BYTES + 1, 4);
        let err = put(db.exec(), job.id, Some(epoch), "big", "", &big[..], &caps)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::TooLarge { limit } if limit == caps.max_blob_bytes),
            "{err:?}"
        );
        assert!(err.to_string().contains("ask the operator"), "{err}");

        let kept = pattern(CHUNK_BYTES + 10, 3);
        put(db.exec(), job.id, Some(epoch), "kept", "", &kept[..], &caps)
            .await
            .unwrap();

        let fits_alone = pattern(2 * CHUNK_BYTES, 5);
        let err = put(
            db.exec(),
            job.id,
            Some(epoch),
            "more",
            "",
            &fits_alone[..],
            &caps,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, BlobError::JobQuota { limit, used }
                if limit == caps.max_job_bytes && used == kept.len() as u64),
            "{err:?}"
        );
        // Replacing a blob does not count the one it replaces.
        put(
            db.exec(),
            job.id,
            Some(epoch),
            "kept",
            "",
            &fits_alone[..],
            &caps,
        )
        .await
        .unwrap();

        let names: Vec<String> = list(db.exec(), job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(count(db, "blob_chunks").await, 2);
        assert_eq!(
            read_all(db.exec(), job.id, "kept").await.unwrap(),
            Some(fits_alone)
        );
    }

    #[tokio::test]
    async fn bad_names_content_types_wrong_epochs_and_missing_jobs_are_refused() {
        for db in backends().await {
            bad_names_content_types_wrong_epochs_and_missing_jobs_are_refused_on(&db).await;
        }
    }

    async fn bad_names_content_types_wrong_epochs_and_missing_jobs_are_refused_on(db: &Backend) {
        let (job, epoch) = claimed_job_with_steps(db).await;
        let caps = BlobCaps::default();
        let long = "a".repeat(NAME_MAX_BYTES + 1);
        for bad in [
            "", "/a", "a/", "a//b", ".", "..", "a/../b", "./a", "a b", "ä", "a\\b", &long,
        ] {
            let err = put(db.exec(), job.id, Some(epoch), bad, "", &b"x"[..], &caps)
                .await
                .unwrap_err();
            assert!(matches!(err, BlobError::BadName(_)), "{bad:?}: {err:?}");
        }
        for good in [
            "a",
            "reports/test.jsonl",
            ".hidden/a..b",
            "A-b_c.1/x",
            &long[1..],
        ] {
            check_name(good).unwrap();
        }
        let err = put(
            db.exec(),
            job.id,
            None,
            "a",
            "text/plain\r\nX: y",
            &b"x"[..],
            &caps,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BlobError::BadContentType(_)), "{err:?}");

        let err = put(db.exec(), JobId::new(), None, "a", "", &b"x"[..], &caps)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::NoJob(_)), "{err:?}");

        crate::testing::take_over_lease(db).await;
        let err = put(db.exec(), job.id, Some(epoch), "a", "", &b"x"[..], &caps)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::Db(DbError::LeaseLost(e)) if e == epoch),
            "{err:?}"
        );
        let err = delete(db.exec(), job.id, Some(epoch), "a")
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::LeaseLost(_)), "{err:?}");
        assert_eq!(count(db, "blobs").await, 0);
    }

    #[tokio::test]
    async fn a_source_that_fails_stores_nothing() {
        for db in backends().await {
            a_source_that_fails_stores_nothing_on(&db).await;
        }
    }

    async fn a_source_that_fails_stores_nothing_on(db: &Backend) {
        struct Failing(usize);
        impl AsyncRead for Failing {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.0 == 0 {
                    return std::task::Poll::Ready(Err(std::io::Error::other("gone")));
                }
                let n = self.0.min(buf.remaining()).min(1000);
                buf.put_slice(&vec![1; n]);
                self.0 -= n;
                std::task::Poll::Ready(Ok(()))
            }
        }
        let (job, _) = claimed_job_with_steps(db).await;
        let err = put(
            db.exec(),
            job.id,
            None,
            "a",
            "",
            Failing(CHUNK_BYTES * 2),
            &BlobCaps::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BlobError::Read(_)), "{err:?}");
        assert_eq!(count(db, "blobs").await, 0);
    }

    #[tokio::test]
    async fn blobs_are_deleted_with_their_job() {
        for db in backends().await {
            blobs_are_deleted_with_their_job_on(&db).await;
        }
    }

    async fn blobs_are_deleted_with_their_job_on(db: &Backend) {
        let (job, _) = claimed_job_with_steps(db).await;
        let (other, _) = claimed_job_with_steps(db).await;
        let caps = BlobCaps::default();
        let data = pattern(CHUNK_BYTES * 2, 9);
        put(db.exec(), job.id, None, "a", "", &data[..], &caps)
            .await
            .unwrap();
        put(db.exec(), other.id, None, "a", "", &data[..], &caps)
            .await
            .unwrap();
        on_exec!(db.exec(), |e| sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(job.id)
            .execute(e)
            .await
            .map(drop)
            .unwrap());
        assert_eq!(list(db.exec(), job.id).await.unwrap(), []);
        assert_eq!(count(db, "blobs").await, 1);
        assert_eq!(count(db, "blob_chunks").await, 2);
        assert_eq!(
            read_all(db.exec(), other.id, "a").await.unwrap(),
            Some(data)
        );
    }
}
