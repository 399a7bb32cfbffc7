-- Users' credentials for private git remotes, one per (user, host): a user name and a password
-- or token sealed with the operator's secrets key (ci_common::secrets, bound to the user and the
-- host). Only the fetch step of that user's jobs from that host gets them, never the log.
CREATE TABLE git_credentials (
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    host        TEXT COLLATE "C" NOT NULL,
    username    TEXT COLLATE "C" NOT NULL,
    secret      TEXT COLLATE "C" NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, host)
);
