-- The items of a batch confirmation: the confirmation each one follows, then its result.
-- An item whose upload was already being confirmed follows that confirmation's task.
CREATE TABLE batch_confirm_items (
    parent_task_id TEXT NOT NULL REFERENCES tasks (id),
    position       INTEGER NOT NULL,
    upload_id      TEXT NOT NULL REFERENCES uploads (id),
    child_task_id  TEXT REFERENCES tasks (id),
    result         JSONB,
    PRIMARY KEY (parent_task_id, position)
);
-- What a finishing confirmation looks up: the open items that follow it.
CREATE INDEX batch_confirm_items_open ON batch_confirm_items (child_task_id) WHERE result IS NULL;

-- Lists.
CREATE INDEX uploads_bucket_status_created ON uploads (bucket_id, status, created_at DESC);
CREATE INDEX tasks_org_status_created ON tasks (organization_id, status, created_at DESC);
CREATE INDEX batches_bucket_created ON batches (bucket_id, created_at DESC);
CREATE INDEX buckets_namespace_created ON buckets (namespace_id, created_at DESC);
