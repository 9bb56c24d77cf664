-- Herald schema, version 2: per-key ordering (SPEC §9, issue 13).
--
-- Acceptance order across nodes: a sequence value taken by the ingest transaction, not the
-- delivery's UUIDv7 (nodes' clocks differ, so ids from two nodes do not compare by time).
-- Deliveries of one event share their event's place: they are in different subscribers' lines.
CREATE SEQUENCE herald_accept_seq;
ALTER TABLE herald_deliveries ADD COLUMN accept_seq bigint;
-- Rows written by version 1 keep their id order (one node wrote them, or their order is that
-- of their ids anyway).
UPDATE herald_deliveries d SET accept_seq = o.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM herald_deliveries) o
WHERE d.id = o.id;
SELECT setval('herald_accept_seq', coalesce((SELECT max(accept_seq) FROM herald_deliveries), 0) + 1, false);
ALTER TABLE herald_deliveries
    ALTER COLUMN accept_seq SET DEFAULT nextval('herald_accept_seq'),
    ALTER COLUMN accept_seq SET NOT NULL;

-- A key's line by acceptance order: "is there an earlier unfinished one" is one index probe.
DROP INDEX herald_deliveries_ordered;
CREATE INDEX herald_deliveries_line ON herald_deliveries (subscriber, ordering_key, accept_seq)
    WHERE ordering_key IS NOT NULL AND status < 2;
-- "Is one of this key's deliveries leased now": a probe of the (few) leased rows.
CREATE INDEX herald_deliveries_line_leased ON herald_deliveries (subscriber, ordering_key)
    WHERE ordering_key IS NOT NULL AND status = 1;
