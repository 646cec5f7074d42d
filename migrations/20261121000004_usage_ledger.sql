-- Bytes stored by confirmations in namespaces without a quota. Appending here takes no lock
-- on the namespace row, which every confirmation of a namespace would otherwise queue on.
-- A namespace's usage is storage_used_bytes plus its rows here; the sweeper folds the rows
-- into storage_used_bytes in one statement. No foreign key: its check would share-lock the
-- namespace row on every append.
CREATE TABLE namespace_usage (
    id           BIGSERIAL PRIMARY KEY,
    namespace_id TEXT NOT NULL,
    bytes        BIGINT NOT NULL
);
CREATE INDEX namespace_usage_namespace ON namespace_usage (namespace_id);
