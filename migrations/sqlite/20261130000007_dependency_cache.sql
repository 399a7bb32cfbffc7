-- The dependency cache: the result of an install step, kept in a Docker volume and used again
-- by the same user's jobs whose install input has the same key (ci_common::cache).
CREATE TABLE cache_entries (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 (hex) of the install's exact input.
    key           TEXT NOT NULL,
    -- The Docker volume holding the installed packages, and the Docker host that has it.
    volume        TEXT NOT NULL UNIQUE,
    host          TEXT NOT NULL DEFAULT 'local',
    -- building: a job installs into it; ready: published, served to its user's jobs;
    -- removing: to be removed by the controller (failed, evicted, pruned or lost a race).
    state         TEXT NOT NULL CHECK (state IN ('building', 'ready', 'removing')),
    -- The job that built it.
    job_id        TEXT,
    size_bytes    INTEGER NOT NULL DEFAULT 0,
    hits          INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL
);
-- At most one published entry per user and key.
CREATE UNIQUE INDEX cache_entries_ready ON cache_entries (user_id, key) WHERE state = 'ready';
CREATE INDEX cache_entries_by_state ON cache_entries (state, last_used_at);

-- `ci submit --no-cache`: the job neither uses nor fills the cache.
ALTER TABLE jobs ADD COLUMN use_cache INTEGER NOT NULL DEFAULT 1 CHECK (use_cache IN (0, 1));
