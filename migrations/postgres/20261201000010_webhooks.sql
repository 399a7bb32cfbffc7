-- Outgoing webhooks and their outbox: the same tables as migrations/sqlite's
-- 20261201000010_webhooks.sql (which explains them), in PostgreSQL's types.
CREATE TABLE webhooks (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT COLLATE "C" NOT NULL,
    secret      TEXT COLLATE "C" NOT NULL,
    -- Comma-separated: `job.started,job.finished`.
    events      TEXT COLLATE "C" NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhooks_by_user ON webhooks (user_id);

CREATE TABLE webhook_deliveries (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    webhook_id        TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    job_id            TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event             TEXT COLLATE "C" NOT NULL CHECK (event IN ('job.started', 'job.finished')),
    -- The JSON exactly as sent.
    body              TEXT COLLATE "C" NOT NULL,
    state             TEXT COLLATE "C" NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ,
    last_status       BIGINT,
    last_error        TEXT COLLATE "C",
    created_at        TIMESTAMPTZ NOT NULL,
    first_attempt_at  TIMESTAMPTZ,
    last_attempt_at   TIMESTAMPTZ,
    delivered_at      TIMESTAMPTZ
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at);
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
