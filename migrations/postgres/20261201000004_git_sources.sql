-- Jobs from git (`ci submit --git URL --ref REF`): the remote and ref asked for, and the commit
-- the fetch step checked out. Such a job has no source until that step has passed; then the
-- fetched tree is stored as its source (sources, source_sha256) like an upload.
ALTER TABLE jobs ADD COLUMN git_url TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN git_ref TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN git_commit TEXT COLLATE "C";
