-- Steps: a job runs an ordered list of steps (named container runs). Each step's plan is stored
-- with it, so a restarted controller continues exactly the plan the job started with.
CREATE TABLE job_steps (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                     ('pending', 'running', 'passed', 'failed', 'error', 'timed_out', 'cancelled', 'lost', 'skipped')),
    -- The step's specification (ci_common::step::StepSpec) as JSON.
    spec         TEXT NOT NULL,
    exit_code    INTEGER,
    reason       TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    PRIMARY KEY (job_id, position),
    UNIQUE (job_id, name)
) WITHOUT ROWID;

-- The step whose container a running job is in (it replaces the two fixed phases).
ALTER TABLE jobs ADD COLUMN step TEXT;
UPDATE jobs SET step = phase;
ALTER TABLE jobs DROP COLUMN phase;

-- Step starts and ends are events of the job's stream (kind 'step'). Event kinds are checked by
-- the program (ci_common::EventKind), so that a new kind needs no rebuild of the largest table.
CREATE TABLE job_events_new (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    stream  TEXT CHECK (stream IN ('stdout', 'stderr')),
    ts      TEXT NOT NULL,
    text    TEXT NOT NULL DEFAULT '',
    -- JSON details of status, step and complete events.
    data    TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
INSERT INTO job_events_new (job_id, seq, kind, stream, ts, text, data)
    SELECT job_id, seq, kind, stream, ts, text, data FROM job_events;
DROP TABLE job_events;
ALTER TABLE job_events_new RENAME TO job_events;
