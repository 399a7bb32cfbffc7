-- Uploaded sources, stored once per content (SHA-256) and kept for a retention window after
-- their last use, so that a job can be run again (`ci retry`). Jobs name theirs; uploads of
-- jobs from before this table stay in job_uploads until those jobs end.
CREATE TABLE sources (
    sha256        TEXT PRIMARY KEY NOT NULL,
    archive       BLOB NOT NULL,
    size          INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sources_by_last_use ON sources (last_used_at);

ALTER TABLE jobs ADD COLUMN source_sha256 TEXT;
CREATE INDEX jobs_by_source ON jobs (source_sha256) WHERE status IN ('queued', 'running');
