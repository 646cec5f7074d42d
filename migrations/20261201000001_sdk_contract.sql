-- Blob types are the SDK's BucketSchemaFieldType values, in lower case; a generic
-- document (once DOCUMENT) is a string blob.
UPDATE uploads SET blob_type = CASE lower(blob_type) WHEN 'document' THEN 'string' ELSE lower(blob_type) END;

UPDATE objects SET blobs = (
    SELECT jsonb_agg(
        CASE WHEN b ? 'type'
             THEN jsonb_set(b, '{type}', to_jsonb(CASE lower(b->>'type') WHEN 'document' THEN 'string' ELSE lower(b->>'type') END))
             ELSE b END)
    FROM jsonb_array_elements(blobs) AS b)
WHERE jsonb_typeof(blobs) = 'array' AND jsonb_array_length(blobs) > 0;

UPDATE buckets SET schema = jsonb_set(schema, '{properties}', (
    SELECT coalesce(jsonb_object_agg(name,
        CASE WHEN prop ? 'type'
             THEN jsonb_set(prop, '{type}', to_jsonb(CASE lower(prop->>'type') WHEN 'document' THEN 'string' ELSE lower(prop->>'type') END))
             ELSE prop END), '{}'::jsonb)
    FROM jsonb_each(schema->'properties') AS p(name, prop)))
WHERE schema IS NOT NULL AND jsonb_typeof(schema->'properties') = 'object';

-- A batch's name, as the SDK's CreateBatchRequest sends it.
ALTER TABLE batches ADD COLUMN batch_name TEXT;

-- Bucket reads count their objects.
CREATE INDEX objects_bucket ON objects (bucket_id);
