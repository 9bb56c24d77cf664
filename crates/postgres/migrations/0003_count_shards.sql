-- Herald schema, version 3: a subscriber's counts spread over shards.
--
-- Every write transaction (ingest, claim, outcome, release, retry, replay, purge) adds its
-- deltas to the counts in the same transaction, so it holds the row it changed until its
-- COMMIT, the WAL flush included. With one row per subscriber, a subscriber's ingest, claims
-- and outcomes committed one at a time (seen as `Lock: transactionid` waits on the counts
-- upsert under load). Now each transaction adds to the row of its connection's shard
-- (pg_backend_pid() % 16): concurrent transactions of one subscriber on different connections
-- no longer wait for each other. A subscriber's counts are the sum of its rows (at most 16).
-- Existing rows become shard 0.
ALTER TABLE herald_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE herald_counts DROP CONSTRAINT herald_counts_pkey;
ALTER TABLE herald_counts ADD PRIMARY KEY (subscriber, shard);
