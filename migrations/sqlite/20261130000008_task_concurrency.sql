-- `concurrency = 1` on a task: at most one running job per user, project and task; the others
-- wait in the queue. The key is the project's name and the task's, set at upload.
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
CREATE INDEX jobs_running_by_concurrency ON jobs (user_id, concurrency_key) WHERE status = 'running';
