-- Browser sign-in: a session is made from an API key and lives until it expires, is ended
-- (sign-out deletes its row) or its key or user can no longer be used. Only the SHA-256 of the
-- cookie's token is stored.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_key ON sessions (key_id);
