-- Secret variables: the same table as migrations/sqlite's 20261201000014_secret_variables.sql
-- (which explains it), in PostgreSQL's types.
CREATE TABLE secret_variables (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id     TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    team_id     TEXT COLLATE "C" REFERENCES teams (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    secret      TEXT COLLATE "C" NOT NULL,
    updated_by  TEXT COLLATE "C" NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE UNIQUE INDEX secret_variables_of_user ON secret_variables (user_id, name) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX secret_variables_of_team ON secret_variables (team_id, name) WHERE team_id IS NOT NULL;
