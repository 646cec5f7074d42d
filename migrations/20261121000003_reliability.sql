-- Confirmations that no worker could finish within the queue's delivery limit (or whose
-- lease ran out too often): failed by the dead-letter consumer, kept for `admin dlq`.
CREATE TABLE dead_letters (
    id               BIGSERIAL PRIMARY KEY,
    task_id          TEXT NOT NULL REFERENCES tasks (id),
    upload_id        TEXT NOT NULL REFERENCES uploads (id),
    reason           TEXT NOT NULL,
    error            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    dead_lettered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at      TIMESTAMPTZ
);
-- A task is dead-lettered at most once until it is replayed.
CREATE UNIQUE INDEX dead_letters_open_task ON dead_letters (task_id) WHERE replayed_at IS NULL;

-- A long job is settled with the broker early and held by a lease its worker renews;
-- a lapsed lease puts the job back on the queue.
ALTER TABLE tasks ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX tasks_lease_until ON tasks (lease_until) WHERE lease_until IS NOT NULL;
