-- The audit log: one row per administrative or user action (a user or key created, activated,
-- deactivated or revoked; a job submitted, cancelled or retried; a trigger, webhook or git
-- credential changed; a sign-in, a sign-out, ...), written in the transaction of the action it
-- records. Append-only: the triggers below refuse to change or delete a row, and retention does
-- not touch it (nothing here references a job or a user, so that nothing deleted takes it along).
--
-- `id` numbers the rows in the order they were written. `actor` is the user's name, or
-- `admin:<OS user>` for ci-admin, and `actor_user_id` the user's id when there is one. `source`
-- is the address the request came from (the server's peer), or `local` for ci-admin. `action` is
-- a dotted name (`user.create`, `job.submit`, ...: ci_common::db::audit::Action), `target` what
-- it acted on (`user ada@example.com`, `job <id>`), `outcome` `ok`, `denied` or `failed`, and
-- `detail` a JSON object with what else is worth knowing. Never a secret: no keys, tokens,
-- passwords, credential values or webhook secrets.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    actor_user_id  TEXT,
    source         TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_at ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_actor_user ON audit_log (actor_user_id, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
