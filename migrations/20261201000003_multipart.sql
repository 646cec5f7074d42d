-- A multipart upload: the store's upload id (created with the upload, at its confirmed key),
-- and the plan its parts follow: all of part_size_bytes but the last.
ALTER TABLE uploads
    ADD COLUMN multipart_upload_id TEXT,
    ADD COLUMN part_size_bytes BIGINT,
    ADD COLUMN part_count INTEGER,
    ADD CONSTRAINT uploads_multipart_plan CHECK (
        (multipart_upload_id IS NULL AND part_size_bytes IS NULL AND part_count IS NULL)
        OR (multipart_upload_id IS NOT NULL AND part_size_bytes > 0 AND part_count > 0
            AND file_size_bytes IS NOT NULL));

-- The sweep asks which multipart uploads in the store an upload still owns.
CREATE UNIQUE INDEX uploads_multipart_upload_id ON uploads (multipart_upload_id)
    WHERE multipart_upload_id IS NOT NULL;
