-- Users' credentials for private git remotes, one per (user, host): a user name and a password
-- or token sealed with the operator's secrets key (ci_common::secrets, bound to the user and the
-- host). Only the fetch step of that user's jobs from that host gets them, never the log.
CREATE TABLE git_credentials (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    host        TEXT NOT NULL,
    username    TEXT NOT NULL,
    secret      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, host)
);
