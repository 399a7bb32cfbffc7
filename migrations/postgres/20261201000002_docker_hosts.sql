-- Many Docker hosts: the host a job runs on (its name in the controller's host list, set when
-- the job is claimed), one published dependency cache entry per user and key on each host (a
-- volume lives on one host), and the hosts as the controller last saw them (`ci-admin hosts`).
ALTER TABLE jobs ADD COLUMN host TEXT COLLATE "C";
CREATE INDEX jobs_running_by_host ON jobs (host) WHERE status = 'running';

DROP INDEX cache_entries_ready;
CREATE UNIQUE INDEX cache_entries_ready ON cache_entries (host, user_id, key) WHERE state = 'ready';

CREATE TABLE docker_hosts (
    name             TEXT COLLATE "C" PRIMARY KEY,
    -- Where the controller reaches its engine (no credentials: TLS files stay on the controller).
    url              TEXT COLLATE "C" NOT NULL,
    -- Jobs it may run at once; NULL: bounded only by --max-concurrent-jobs.
    capacity         BIGINT,
    healthy          BOOLEAN NOT NULL,
    running          BIGINT NOT NULL DEFAULT 0,
    -- CPU in use by its job containers, in thousandths of a core (1500 = one and a half
    -- cores), and their memory, in bytes, from Docker's container stats.
    cpu_millicores   BIGINT,
    memory_bytes     BIGINT,
    -- Why it is not healthy (the last failed check).
    error            TEXT COLLATE "C",
    -- When it stopped answering (while it does not answer).
    unhealthy_at     TIMESTAMPTZ,
    checked_at       TIMESTAMPTZ NOT NULL
);
