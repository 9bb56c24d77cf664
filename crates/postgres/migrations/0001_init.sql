-- Herald schema, version 1. Applied in one transaction by herald_postgres::migrate.
-- Times are unix milliseconds (bigint), as Herald stores them everywhere.

-- Fencing tokens: a new one for every claim of a delivery.
CREATE SEQUENCE herald_lease_seq;

-- One row per subscriber that ever had work: its claim turn (locked FOR UPDATE SKIP LOCKED by
-- the claimer, so a busy subscriber is skipped, never waited on) and its pause.
CREATE TABLE herald_subscribers (
    id            text PRIMARY KEY,
    paused_reason text
);

-- Counts by state, maintained in the same transaction as every change (never by scanning).
-- A separate table from herald_subscribers so that ingest updating counts never makes a claim
-- skip the subscriber.
CREATE TABLE herald_counts (
    subscriber text PRIMARY KEY,
    pending    bigint NOT NULL DEFAULT 0,
    in_flight  bigint NOT NULL DEFAULT 0,
    delivered  bigint NOT NULL DEFAULT 0,
    dead       bigint NOT NULL DEFAULT 0
);

-- The payload, stored once per event.
CREATE TABLE herald_events (
    id              uuid PRIMARY KEY,
    event_type      text NOT NULL,
    payload         bytea NOT NULL,
    received_at     bigint NOT NULL,
    ordering_key    text,
    idempotency_key text,
    traceparent     text,
    -- false for an event fanned out to nobody: purged by age alone.
    has_deliveries  boolean NOT NULL
);
CREATE INDEX herald_events_received ON herald_events (received_at, id);
CREATE INDEX herald_events_undelivered ON herald_events (received_at) WHERE NOT has_deliveries;

-- Ingest idempotency keys, cluster-wide; expire with retention.
CREATE TABLE herald_idempotency (
    key        text PRIMARY KEY,
    event_id   uuid NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX herald_idempotency_created ON herald_idempotency (created_at);

-- The hot table. status: 0 pending, 1 in flight (leased), 2 delivered, 3 dead.
-- ready_at: when a pending delivery is due, or when an in-flight one's lease expires; either
-- way the time it becomes claimable. NULL once finished.
CREATE TABLE herald_deliveries (
    id           uuid PRIMARY KEY,
    event_id     uuid NOT NULL,
    subscriber   text NOT NULL,
    status       smallint NOT NULL,
    ready_at     bigint,
    lease_token  bigint,
    lease_node   text,
    attempts     integer NOT NULL DEFAULT 0,
    budget_first integer NOT NULL DEFAULT 1,
    budget_since bigint NOT NULL,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    finished_at  bigint,
    last_error   text,
    -- Set only when this subscriber orders this event's deliveries by key (SPEC §9).
    ordering_key text
) WITH (fillfactor = 80);
-- Claimable and next due, per subscriber.
CREATE INDEX herald_deliveries_ready ON herald_deliveries (subscriber, ready_at, id) WHERE status < 2;
-- Unexpired leases per subscriber (the cluster-wide cap) and per node (restart release).
CREATE INDEX herald_deliveries_leases ON herald_deliveries (subscriber, ready_at) WHERE status = 1;
-- Listing by subscriber and state (dead per subscriber, redrive, replay).
CREATE INDEX herald_deliveries_sub_status ON herald_deliveries (subscriber, status, id);
-- An event's deliveries.
CREATE INDEX herald_deliveries_event ON herald_deliveries (event_id);
-- The retention purge.
CREATE INDEX herald_deliveries_finished ON herald_deliveries (finished_at) WHERE status >= 2;
-- The head of a key's line (SPEC §9).
CREATE INDEX herald_deliveries_ordered ON herald_deliveries (subscriber, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status < 2;

-- Attempt history: append-only rows (a jsonb array would rewrite the whole history, TOASTed,
-- at every attempt).
CREATE TABLE herald_attempts (
    delivery_id uuid NOT NULL,
    attempt     integer NOT NULL,
    at          bigint NOT NULL,
    status_code integer,
    error       text,
    duration_ms bigint NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Node heartbeats for GET /v1/cluster.
CREATE TABLE herald_nodes (
    id         text PRIMARY KEY,
    started_at bigint NOT NULL,
    last_seen  bigint NOT NULL,
    in_flight  bigint NOT NULL DEFAULT 0
);

-- The cluster-wide rate-limit token bucket of each subscriber.
CREATE TABLE herald_rate_buckets (
    subscriber text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at bigint NOT NULL,
    last_taken integer NOT NULL DEFAULT 0
);

-- The cluster-wide error-rate throttle of each subscriber: its effective limit and a window of
-- 10 buckets (slot = step number since the epoch).
CREATE TABLE herald_throttle (
    subscriber  text PRIMARY KEY,
    lim         integer NOT NULL,
    max_limit   integer NOT NULL,
    last_change bigint NOT NULL,
    slots       bigint[] NOT NULL,
    oks         integer[] NOT NULL,
    fails       integer[] NOT NULL
);
