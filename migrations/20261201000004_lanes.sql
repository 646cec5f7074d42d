-- Bulk confirmation jobs wait here, by namespace, until the dispatcher hands them to the
-- broker in fair shares (round-robin over namespaces, the broker's bulk queue kept short).
-- Rows without a namespace (sync confirmations, batch announcements, replays) are
-- published at once, as before.
ALTER TABLE outbox ADD COLUMN namespace_id TEXT;
CREATE INDEX outbox_fair_share ON outbox (namespace_id, id) WHERE namespace_id IS NOT NULL;
CREATE INDEX outbox_direct ON outbox (id) WHERE namespace_id IS NULL;
-- Canceling a confirmation drops its bulk job if it still waits.
CREATE INDEX outbox_waiting_job ON outbox (message_id) WHERE namespace_id IS NOT NULL;
