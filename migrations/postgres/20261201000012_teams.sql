-- Teams: the same tables and columns as migrations/sqlite's 20261201000012_teams.sql (which
-- explains them), in PostgreSQL's types.
CREATE TABLE teams (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX teams_by_name ON teams (lower(name));

CREATE TABLE team_members (
    team_id   TEXT COLLATE "C" NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_user ON team_members (user_id, team_id);

ALTER TABLE jobs ADD COLUMN team_id TEXT COLLATE "C" REFERENCES teams (id) ON DELETE SET NULL;
CREATE INDEX jobs_by_team ON jobs (team_id, num DESC) WHERE team_id IS NOT NULL;

ALTER TABLE cache_entries ADD COLUMN team_id TEXT COLLATE "C" REFERENCES teams (id) ON DELETE SET NULL;
DROP INDEX cache_entries_ready;
CREATE UNIQUE INDEX cache_entries_ready ON cache_entries (host, user_id, key) WHERE state = 'ready' AND team_id IS NULL;
CREATE UNIQUE INDEX cache_entries_ready_team ON cache_entries (host, team_id, key) WHERE state = 'ready' AND team_id IS NOT NULL;
