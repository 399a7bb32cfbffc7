-- Many Docker hosts: the host a job runs on (its name in the controller's host list, set when
-- the job is claimed), one published dependency cache entry per user and key on each host (a
-- volume lives on one host), and the hosts as the controller last saw them (`ci-admin hosts`).
ALTER TABLE jobs ADD COLUMN host TEXT;
CREATE INDEX jobs_running_by_host ON jobs (host) WHERE status = 'running';

DROP INDEX cache_entries_ready;
CREATE UNIQUE INDEX cache_entries_ready ON cache_entries (host, user_id, key) WHERE state = 'ready';

CREATE TABLE docker_hosts (
    name             TEXT PRIMARY KEY NOT NULL,
    -- Where the controller reaches its engine (no credentials: TLS files stay on the controller).
    url              TEXT NOT NULL,
    -- Jobs it may run at once; NULL: bounded only by --max-concurrent-jobs.
    capacity         INTEGER,
    healthy          INTEGER NOT NULL CHECK (healthy IN (0, 1)),
    running          INTEGER NOT NULL DEFAULT 0,
    -- CPU in use by its job containers, in thousandths of a core (1500 = one and a half
    -- cores), and their memory, in bytes, from Docker's container stats.
    cpu_millicores   INTEGER,
    memory_bytes     INTEGER,
    -- Why it is not healthy (the last failed check).
    error            TEXT,
    -- When it stopped answering (while it does not answer).
    unhealthy_at     TEXT,
    checked_at       TEXT NOT NULL
);
