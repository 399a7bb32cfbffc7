-- Retries of failed tests, flaky tests and per-project history.

-- How many times a job re-runs its failed tests (each re-run is another step), whether a flaky
-- test (failed, then passed) fails the job, and the project the job belongs to (its history).
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN fail_on_flaky INTEGER NOT NULL DEFAULT 0 CHECK (fail_on_flaky IN (0, 1));
ALTER TABLE jobs ADD COLUMN project TEXT;
CREATE INDEX jobs_by_project ON jobs (user_id, project, num DESC);

-- A test's latest attempt, and its past runs across a user's jobs.
CREATE INDEX test_results_by_nodeid ON test_results (job_id, nodeid, attempt);
