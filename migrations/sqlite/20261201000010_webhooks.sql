-- Outgoing webhooks. A user registers a receiver's URL with the events it wants; the server
-- generates its secret, which signs every delivery (HMAC-SHA256) and is kept as it is, since
-- signing needs it. `events` lists the events, comma-separated (`job.started,job.finished`).
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX webhooks_by_user ON webhooks (user_id);

-- The outbox: one row per delivery of an event to a webhook, written in the transaction that
-- caused the event (a job's claim, a job's end) and sent by the controller's sender. `body` is
-- the JSON exactly as sent (every attempt sends the same bytes); `id` is in it and in the
-- X-CI-Delivery header, for receivers to drop repeats (delivery is at least once).
-- `next_attempt_at` is set while the delivery is pending; `last_status` is the HTTP status of
-- the last answer (NULL when there was none: no connection, a timeout), `last_error` what went
-- wrong with the last attempt.
CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY NOT NULL,
    webhook_id        TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    job_id            TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event             TEXT NOT NULL CHECK (event IN ('job.started', 'job.finished')),
    body              TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    last_status       INTEGER,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    first_attempt_at  TEXT,
    last_attempt_at   TEXT,
    delivered_at      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at);
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
