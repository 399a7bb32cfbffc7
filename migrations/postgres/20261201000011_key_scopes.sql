-- What an API key may do: 'submit' (everything its user may, as before) or 'read' (list, follow
-- and download, but not submit, cancel or change anything). Sessions made from a key have its
-- scope.
ALTER TABLE api_keys ADD COLUMN scope TEXT COLLATE "C" NOT NULL DEFAULT 'submit' CHECK (scope IN ('read', 'submit'));
