-- job_events.job_id loses its foreign key on PostgreSQL. The key's check is a trigger that runs
-- one query per inserted row (PostgreSQL does not batch them), and it took about a third of the
-- server's time when a job's log is stored in batches of a thousand lines. What it guarded is kept
-- otherwise: every append locks the job's row first and fails when there is none
-- (events::append, jobs::lock_row), and a job is never deleted while events are written for it.
-- Whatever deletes jobs deletes their events itself; the other tables keep their ON DELETE
-- CASCADE. SQLite, whose key check costs little, keeps the key.
ALTER TABLE job_events DROP CONSTRAINT job_events_job_id_fkey;
