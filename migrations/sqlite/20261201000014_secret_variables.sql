-- Secret variables: a user's or a team's named values (`ci secrets set NAME`), sealed with the
-- operator's secrets key (ci_common::secrets, bound to the owner and the name). A step of a task
-- that lists a name under `secrets = [...]` gets it as an environment variable: a personal job
-- its submitter's, a team's job the team's. Exactly one of `user_id` and `team_id` is set.
CREATE TABLE secret_variables (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    team_id     TEXT REFERENCES teams (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    secret      TEXT NOT NULL,
    -- The name of the user who last set it.
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE UNIQUE INDEX secret_variables_of_user ON secret_variables (user_id, name) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX secret_variables_of_team ON secret_variables (team_id, name) WHERE team_id IS NOT NULL;
