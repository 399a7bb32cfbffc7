-- Teams: named groups of users. A job submitted to a team (`ci submit --team T`) is visible to
-- every member of the team, and its dependency cache is the team's. Deleting a team leaves its
-- jobs with whoever submitted them (`team_id` becomes NULL) and gives up the team's cache
-- entries (they become `removing`, and the controller removes their volumes).
CREATE TABLE teams (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX teams_by_name ON teams (lower(name));

CREATE TABLE team_members (
    team_id   TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at  TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_user ON team_members (user_id, team_id);

ALTER TABLE jobs ADD COLUMN team_id TEXT REFERENCES teams (id) ON DELETE SET NULL;
CREATE INDEX jobs_by_team ON jobs (team_id, num DESC) WHERE team_id IS NOT NULL;

-- A cache entry built by a team job belongs to the team (served to the team's jobs only);
-- NULL for a user's own entries.
ALTER TABLE cache_entries ADD COLUMN team_id TEXT REFERENCES teams (id) ON DELETE SET NULL;
DROP INDEX cache_entries_ready;
CREATE UNIQUE INDEX cache_entries_ready ON cache_entries (host, user_id, key) WHERE state = 'ready' AND team_id IS NULL;
CREATE UNIQUE INDEX cache_entries_ready_team ON cache_entries (host, team_id, key) WHERE state = 'ready' AND team_id IS NOT NULL;
