-- Projects as they are: extra pytest arguments per job, and the operator's policy.

-- `ci submit test -- ARGS`: a JSON array of strings, passed to pytest after its own options.
ALTER TABLE jobs ADD COLUMN args TEXT NOT NULL DEFAULT '[]';

-- What the running controller allows (images, archive limits), as JSON; the server validates
-- uploads against it.
CREATE TABLE operator_policy (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    policy      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
