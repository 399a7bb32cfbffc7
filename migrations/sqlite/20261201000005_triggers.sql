-- Trigger tokens: a user's token bound to a task and a git source, that starts a job from
-- another system without an API key (POST /api/v1/trigger/{token}), or, for kind 'push', from a
-- signed push webhook (POST /api/v1/hooks/{token}) with its own HMAC secret. The token is kept
-- only as its SHA-256, like API keys; the webhook secret must be read to verify a signature.
CREATE TABLE triggers (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('run', 'push')),
    token_sha256  TEXT NOT NULL UNIQUE,
    secret        TEXT,
    task          TEXT NOT NULL,
    git_url       TEXT NOT NULL,
    git_ref       TEXT,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX triggers_by_user ON triggers (user_id);
