-- Tenancy: organizations own API keys and namespaces; namespaces own buckets.
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    -- SHA-256 of the plain key; the plain key is shown once and never stored.
    key_hash        TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);

CREATE TABLE namespaces (
    id                  TEXT PRIMARY KEY,
    organization_id     TEXT NOT NULL REFERENCES organizations (id),
    name                TEXT NOT NULL,
    max_file_size_bytes BIGINT,
    storage_quota_bytes BIGINT,
    storage_used_bytes  BIGINT NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE buckets (
    id           TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespaces (id),
    name         TEXT NOT NULL,
    description  TEXT,
    metadata     JSONB NOT NULL DEFAULT '{}',
    schema       JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (namespace_id, name)
);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    namespace_id    TEXT REFERENCES namespaces (id),
    task_type       TEXT NOT NULL,
    status          TEXT NOT NULL,
    inputs          JSONB NOT NULL DEFAULT '{}',
    outputs         JSONB,
    additional_data JSONB,
    error           TEXT,
    progress        JSONB,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_org_created ON tasks (organization_id, created_at DESC);

CREATE TABLE uploads (
    id                       TEXT PRIMARY KEY,
    bucket_id                TEXT NOT NULL REFERENCES buckets (id),
    namespace_id             TEXT NOT NULL REFERENCES namespaces (id),
    filename                 TEXT NOT NULL,
    content_type             TEXT NOT NULL,
    file_size_bytes          BIGINT,
    presigned_url_expiration INTEGER NOT NULL,
    s3_key                   TEXT NOT NULL,
    status                   TEXT NOT NULL,
    metadata                 JSONB NOT NULL DEFAULT '{}',
    create_object_on_confirm BOOLEAN NOT NULL,
    object_metadata          JSONB,
    blob_property            TEXT NOT NULL,
    blob_type                TEXT NOT NULL,
    file_hash                TEXT,
    skip_duplicates          BOOLEAN NOT NULL,
    is_duplicate             BOOLEAN NOT NULL DEFAULT false,
    duplicate_of_upload_id   TEXT,
    message                  TEXT,
    etag                     TEXT,
    object_id                TEXT,
    task_id                  TEXT REFERENCES tasks (id),
    batch_id                 TEXT,
    batch_task_id            TEXT,
    error                    TEXT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at               TIMESTAMPTZ NOT NULL,
    verified_at              TIMESTAMPTZ,
    completed_at             TIMESTAMPTZ
);
CREATE INDEX uploads_bucket_created ON uploads (bucket_id, created_at DESC);
CREATE INDEX uploads_pending_expiry ON uploads (expires_at) WHERE status = 'PENDING';

CREATE TABLE objects (
    id           TEXT PRIMARY KEY,
    bucket_id    TEXT NOT NULL REFERENCES buckets (id),
    namespace_id TEXT NOT NULL REFERENCES namespaces (id),
    -- An upload creates at most one object, whatever is redelivered.
    upload_id    TEXT NOT NULL UNIQUE REFERENCES uploads (id),
    blobs        JSONB NOT NULL,
    metadata     JSONB,
    status       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The first completed upload of each content in a bucket: the original that duplicates point at.
-- The primary key makes duplicate detection race-free across workers.
CREATE TABLE bucket_contents (
    bucket_id    TEXT NOT NULL REFERENCES buckets (id),
    content_hash TEXT NOT NULL,
    upload_id    TEXT NOT NULL REFERENCES uploads (id),
    object_id    TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket_id, content_hash)
);

CREATE TABLE batches (
    id           TEXT PRIMARY KEY,
    bucket_id    TEXT NOT NULL REFERENCES buckets (id),
    namespace_id TEXT NOT NULL REFERENCES namespaces (id),
    status       TEXT NOT NULL,
    object_ids   TEXT[] NOT NULL,
    task_id      TEXT REFERENCES tasks (id),
    metadata     JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Messages accepted in a transaction and not yet acknowledged by the broker.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    exchange    TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
