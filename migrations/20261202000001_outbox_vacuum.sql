-- The outbox is a queue: every row is inserted, read once and deleted, so after a drain
-- its indexes hold as many dead entries as jobs went through, and every dispatch round's
-- scan walks them until a vacuum. PostgreSQL's defaults wait for 20 % of the table to be
-- dead, which a table that is empty between drains never reaches: vacuum it after a fixed
-- number of deletions instead, without the cost-based pauses.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
