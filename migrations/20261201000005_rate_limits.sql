-- Request rate limits: one token bucket per organization, in the database so that every API
-- replica takes from the same one. Each authenticated request refills the bucket for the time
-- since refreshed_at and takes a token in one statement (store/rate_limits.rs).
--
-- rate_per_second and burst are the organization's own limit (`admin set-rate-limit`); NULL
-- means the service default (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST), and 0 in either means
-- no limit. tokens and refreshed_at are the bucket as the latest request left it (NULL tokens:
-- full); admitted is whether that request was let through, which the statement returns.
-- Every limited request rewrites its organization's row: free room on each page keeps those
-- updates HOT (no index touches the columns they change).
CREATE TABLE rate_limits (
    organization_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    rate_per_second DOUBLE PRECISION CHECK (rate_per_second >= 0),
    burst           DOUBLE PRECISION CHECK (burst = 0 OR burst >= 1),
    tokens          DOUBLE PRECISION,
    refreshed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    admitted        BOOLEAN NOT NULL DEFAULT true,
    -- An organization's own limit has both; the default, neither.
    CHECK ((rate_per_second IS NULL) = (burst IS NULL))
) WITH (fillfactor = 50);
