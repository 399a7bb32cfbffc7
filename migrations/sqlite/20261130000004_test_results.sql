-- Test results: one row per test and attempt, from the report ci's pytest plugin writes.
CREATE TABLE test_results (
    job_id            TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The step that ran the tests (a retry is another step).
    step              TEXT NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 1,
    -- Order within the attempt, as the tests finished.
    idx               INTEGER NOT NULL,
    nodeid            TEXT NOT NULL,
    file              TEXT,
    line              INTEGER,
    outcome           TEXT NOT NULL CHECK (outcome IN
                          ('passed', 'failed', 'error', 'skipped', 'xfailed', 'xpassed', 'flaky')),
    duration_ms       INTEGER NOT NULL DEFAULT 0,
    message           TEXT NOT NULL DEFAULT '',
    -- The failure's text as pytest printed it, cut at the cap; `longrepr_chars` is its whole size.
    longrepr          TEXT NOT NULL DEFAULT '',
    longrepr_chars    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, step, idx)
) WITHOUT ROWID;
CREATE INDEX test_results_by_outcome ON test_results (job_id, outcome);

-- Counts per outcome of a job's tests, as JSON (absent until its results are collected).
ALTER TABLE jobs ADD COLUMN test_counts TEXT;
