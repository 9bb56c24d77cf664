-- Herald schema, version 4: vacuum the hot tables eagerly.
--
-- Every attempt updates its delivery row (status, attempts, lease), so herald_deliveries turns
-- over its rows many times a day. PostgreSQL's default starts autovacuum only once 20 % of a
-- table is dead rows: on a table of millions of rows that lets dead tuples, index bloat and
-- slower claims build up for hours. 2 % keeps the claim indexes tight; analyze follows suit so
-- the planner sees the queue's shape change.
ALTER TABLE herald_deliveries SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
-- The small, hot cluster tables (one row per subscriber or node, rewritten every few hundred
-- milliseconds): vacuum them by row count, not by share.
ALTER TABLE herald_counts SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE herald_throttle SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE herald_rate_buckets SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE herald_nodes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
