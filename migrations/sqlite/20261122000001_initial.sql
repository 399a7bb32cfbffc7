-- The whole schema of ci. Timestamps are UTC, stored as RFC 3339 text.

CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  TEXT NOT NULL
);

-- Only the SHA-256 of a key is stored; `prefix` is a short non-secret part shown in listings.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    expires_at    TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id);

-- `num` orders jobs (FIFO queue, newest-first listings); `id` is what users see.
CREATE TABLE jobs (
    num                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL REFERENCES users (id),
    task                 TEXT NOT NULL DEFAULT 'test',
    status               TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
                             ('queued', 'running', 'passed', 'failed', 'error', 'timed_out', 'cancelled', 'lost')),
    reason               TEXT,
    exit_code            INTEGER,
    oom_killed           INTEGER NOT NULL DEFAULT 0 CHECK (oom_killed IN (0, 1)),
    attempt              INTEGER NOT NULL DEFAULT 0,
    image                TEXT,
    -- 'install' or 'test' while running: which container the controller is waiting on.
    phase                TEXT CHECK (phase IN ('install', 'test')),
    created_at           TEXT NOT NULL,
    started_at           TEXT,
    finished_at          TEXT,
    cancel_requested_at  TEXT,
    -- The lease epoch of the controller that claimed the job.
    controller_epoch     INTEGER,
    upload_bytes         INTEGER NOT NULL DEFAULT 0,
    log_lines            INTEGER NOT NULL DEFAULT 0,
    log_bytes            INTEGER NOT NULL DEFAULT 0,
    dropped_lines        INTEGER NOT NULL DEFAULT 0,
    dropped_bytes        INTEGER NOT NULL DEFAULT 0,
    -- Where the stored log ends in the container's log (Docker timestamp of the last stored line,
    -- and how many lines carried exactly that timestamp), so a new controller resumes without
    -- duplicating or losing a line.
    log_cursor           TEXT,
    log_cursor_skip      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_user ON jobs (user_id, num DESC);
CREATE INDEX jobs_queued ON jobs (user_id, num) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (user_id) WHERE status = 'running';
CREATE INDEX jobs_user_started ON jobs (user_id, started_at);

-- The uploaded project, kept until the job no longer needs it.
CREATE TABLE job_uploads (
    job_id      TEXT PRIMARY KEY NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    archive     BLOB NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Everything a job says, in order: seq = 1, 2, 3, ... per job without gaps.
CREATE TABLE job_events (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('log', 'status', 'notice', 'complete')),
    stream  TEXT CHECK (stream IN ('stdout', 'stderr')),
    ts      TEXT NOT NULL,
    text    TEXT NOT NULL DEFAULT '',
    -- JSON details of status and complete events.
    data    TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- The single controller: whoever holds the highest epoch may write; older epochs are fenced off.
CREATE TABLE controller_lease (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    epoch         INTEGER NOT NULL,
    holder        TEXT NOT NULL,
    acquired_at   TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    released_at   TEXT
);
