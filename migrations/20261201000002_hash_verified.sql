-- An upload whose PUT URL signs the declared SHA-256: the store checks the bytes at PUT,
-- and confirm reads none.
ALTER TABLE uploads ADD COLUMN enforce_file_hash BOOLEAN NOT NULL DEFAULT false;
