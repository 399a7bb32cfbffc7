-- Blobs: a job's named binary data (JUnit reports, artifacts, later large logs), stored in
-- chunks behind one module (`ci_common::db::blobs`), which also enforces their caps. Plain types
-- only, so that a PostgreSQL backend holds the same schema (BLOB there is BYTEA).
CREATE TABLE blobs (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- `/`-separated segments of [A-Za-z0-9._-], e.g. `reports/test.jsonl` (checked by the module).
    name          TEXT NOT NULL,
    -- The whole blob's size in bytes and its SHA-256 (lower-case hex).
    size          INTEGER NOT NULL CHECK (size >= 0),
    sha256        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    -- How many rows `blob_chunks` holds for it: idx 0 .. chunks - 1.
    chunks        INTEGER NOT NULL CHECK (chunks >= 0),
    created_at    TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);

-- A blob's bytes in order; every chunk but the last is full (256 KiB).
CREATE TABLE blob_chunks (
    job_id  TEXT NOT NULL,
    name    TEXT NOT NULL,
    idx     INTEGER NOT NULL CHECK (idx >= 0),
    data    BLOB NOT NULL,
    PRIMARY KEY (job_id, name, idx),
    FOREIGN KEY (job_id, name) REFERENCES blobs (job_id, name) ON DELETE CASCADE
);
