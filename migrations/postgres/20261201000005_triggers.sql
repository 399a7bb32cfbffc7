-- Trigger tokens: a user's token bound to a task and a git source, that starts a job from
-- another system without an API key (POST /api/v1/trigger/{token}), or, for kind 'push', from a
-- signed push webhook (POST /api/v1/hooks/{token}) with its own HMAC secret. The token is kept
-- only as its SHA-256, like API keys; the webhook secret must be read to verify a signature.
CREATE TABLE triggers (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    kind          TEXT COLLATE "C" NOT NULL CHECK (kind IN ('run', 'push')),
    token_sha256  TEXT COLLATE "C" NOT NULL UNIQUE,
    secret        TEXT COLLATE "C",
    task          TEXT COLLATE "C" NOT NULL,
    git_url       TEXT COLLATE "C" NOT NULL,
    git_ref       TEXT COLLATE "C",
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX triggers_by_user ON triggers (user_id);
