-- 0002: the token status of each event, secondary indexes for the questions people ask,
-- and rollups kept by ClickHouse itself (materialized views): per-minute and per-hour counts,
-- failures by IP, the token inventory and first-seen (token, IP) pairs. The migration runner
-- fills each new view's table from the events already stored, with the view's own SELECT.
-- A search by fingerprint finds the token key through the bloom filter index of 0001.

-- The token's status when the event arrived: active, disabled, revoked, rotated, expired, or
-- '' when tokenotel has seen no lifecycle event or expiry for it. A use with status revoked
-- or expired is a use after revocation or expiry.
ALTER TABLE token_events ADD COLUMN IF NOT EXISTS token_status LowCardinality(String) AFTER outcome;

-- A secondary index for client addresses: only row positions, sorted by address (a few bytes
-- a row), so an IP or a range (a /24 over 30 days) reads its granules instead of the whole
-- table. A principal needs none: its tokens sort together, and the bloom filter index of 0001
-- skips the rest.
ALTER TABLE token_events ADD PROJECTION IF NOT EXISTS by_client_ip (SELECT _part_offset ORDER BY client_ip);
ALTER TABLE token_events MATERIALIZE PROJECTION by_client_ip SETTINGS mutations_sync = 2;

-- Per token and minute: rates and failure series of one token.
CREATE TABLE IF NOT EXISTS token_minutes
(
    token_key  String,
    minute     DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    event_name LowCardinality(String),
    outcome    LowCardinality(String),
    events     UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (token_key, minute, event_name, outcome);

CREATE MATERIALIZED VIEW IF NOT EXISTS token_minutes_mv TO token_minutes AS
SELECT token_key, toStartOfMinute(event_time) AS minute, event_name, outcome, count() AS events
FROM token_events
GROUP BY token_key, minute, event_name, outcome;

-- Per minute across all tokens: the overview (events by type, outcome, reason, origin).
CREATE TABLE IF NOT EXISTS event_minutes
(
    minute         DateTime('UTC'),
    event_name     LowCardinality(String),
    outcome        LowCardinality(String),
    failure_reason LowCardinality(String),
    token_status   LowCardinality(String),
    service_name   LowCardinality(String),
    environment    LowCardinality(String),
    source         LowCardinality(String),
    events         UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, event_name, outcome, failure_reason, token_status, service_name, environment, source);

CREATE MATERIALIZED VIEW IF NOT EXISTS event_minutes_mv TO event_minutes AS
SELECT toStartOfMinute(event_time) AS minute, event_name, outcome, failure_reason, token_status,
       service_name, environment, source, count() AS events
FROM token_events
GROUP BY minute, event_name, outcome, failure_reason, token_status, service_name, environment, source;

-- Per token and hour, sorted by hour: the top tokens of a time window read that window's
-- hours, never the events.
CREATE TABLE IF NOT EXISTS token_hours
(
    hour     DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    token_key String,
    events   UInt64 CODEC(T64, ZSTD(1)),
    failures UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, token_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS token_hours_mv TO token_hours AS
SELECT toStartOfHour(event_time) AS hour, token_key, count() AS events,
       countIf(outcome = 'failure') AS failures
FROM token_events
GROUP BY hour, token_key;

-- The 1,000 busiest tokens of the last 24 hours, recomputed every minute from token_hours:
-- a token's day is a handful of events, so even hourly rows are as many as the day's events,
-- and summing them costs a query a day's worth of work; this list costs it 1,000 rows.
CREATE TABLE IF NOT EXISTS top_tokens_24h
(
    token_key    String,
    events       UInt64,
    failures     UInt64,
    refreshed_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY token_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS top_tokens_24h_mv REFRESH EVERY 1 MINUTE TO top_tokens_24h AS
SELECT token_key, sum(events) AS events, sum(failures) AS failures, now() AS refreshed_at
FROM token_hours
WHERE hour >= toStartOfHour(now() - INTERVAL 1 DAY)
GROUP BY token_key
ORDER BY events DESC, token_key
LIMIT 1000;

-- Failures per client IP and minute, with the distinct tokens it failed against: sprays (one
-- IP failing on many tokens) and failure bursts by IP. Only failures: a row per IP and minute
-- of all traffic would cost as much as the events themselves. uniq is exact up to tens of
-- thousands of tokens, far above any spray threshold.
CREATE TABLE IF NOT EXISTS ip_failure_minutes
(
    minute    DateTime('UTC'),
    client_ip IPv6,
    failures  SimpleAggregateFunction(sum, UInt64),
    tokens    AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, client_ip);

CREATE MATERIALIZED VIEW IF NOT EXISTS ip_failure_minutes_mv TO ip_failure_minutes AS
SELECT toStartOfMinute(event_time) AS minute, client_ip, count() AS failures,
       uniqState(token_key) AS tokens
FROM token_events
WHERE outcome = 'failure'
GROUP BY minute, client_ip;

-- The latest state of every token, merged by ClickHouse; read it through the view
-- token_inventory. Each "newest value" is the max of (time, value): the value of the newest
-- event that carries one (events without one rank at time zero), so a use without scopes does
-- not blank the scopes. Plain tuples, not aggregate states: cheap to merge and to read.
CREATE TABLE IF NOT EXISTS token_inventory_state
(
    token_key     String,
    token_id      SimpleAggregateFunction(max, String),
    token_type    SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), String)),
    token_name    SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), String)),
    owner         SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), String)),
    tenant        SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), String)),
    scopes        SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), Array(String))),
    expires_at    SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), Nullable(DateTime64(3, 'UTC')))),
    lifecycle     SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), String)),
    created_at    SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    last_used_at  SimpleAggregateFunction(max, Nullable(DateTime64(9, 'UTC'))),
    last_ip       SimpleAggregateFunction(max, Tuple(DateTime64(9, 'UTC'), IPv6)),
    use_count     SimpleAggregateFunction(sum, UInt64),
    failure_count SimpleAggregateFunction(sum, UInt64),
    first_seen    SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen     SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY token_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS token_inventory_mv TO token_inventory_state AS
WITH toDateTime64(0, 9, 'UTC') AS never,
     multiIf(event_name IN ('token.created', 'token.enabled'), 'active',
             event_name = 'token.disabled', 'disabled',
             event_name = 'token.revoked', 'revoked',
             event_name = 'token.expired', 'expired', '') AS lifecycle_now
SELECT token_key,
       max(token_id) AS token_id,
       max((if(token_type != '', event_time, never), toString(token_type))) AS token_type,
       max((if(token_name != '', event_time, never), token_name)) AS token_name,
       max((if(principal_id != '', event_time, never), principal_id)) AS owner,
       max((if(tenant != '', event_time, never), toString(tenant))) AS tenant,
       max((if(notEmpty(scopes), event_time, never), CAST(scopes, 'Array(String)'))) AS scopes,
       max((if(expires_at IS NOT NULL, event_time, never), expires_at)) AS expires_at,
       max((if(lifecycle_now != '', event_time, never), lifecycle_now)) AS lifecycle,
       min(if(event_name = 'token.created', event_time, NULL)) AS created_at,
       max(if(event_name = 'token.used' AND outcome = 'success', event_time, NULL)) AS last_used_at,
       max((if(event_name = 'token.used', event_time, never), client_ip)) AS last_ip,
       countIf(event_name = 'token.used') AS use_count,
       countIf(outcome = 'failure') AS failure_count,
       min(event_time) AS first_seen,
       max(event_time) AS last_seen
FROM token_events
GROUP BY token_key;

-- A rotation retires the previous id: its inventory row turns to status rotated. (Columns
-- not named take their defaults, which every max/min above ignores.)
CREATE MATERIALIZED VIEW IF NOT EXISTS token_inventory_rotated_mv TO token_inventory_state AS
SELECT previous_token_id AS token_key,
       max((event_time, 'rotated')) AS lifecycle,
       min(event_time) AS first_seen,
       max(event_time) AS last_seen
FROM token_events
WHERE event_name = 'token.rotated' AND previous_token_id != ''
GROUP BY token_key;

-- What people read: one row per token, with the status as of now (expiry applied), in plain
-- types (Grafana shows SimpleAggregateFunction types poorly).
CREATE VIEW IF NOT EXISTS token_inventory AS
WITH toDateTime64(0, 9, 'UTC') AS never
SELECT token_key,
       CAST(max(token_id) AS String) AS token_id,
       CAST(max(token_type).2 AS String) AS token_type,
       CAST(max(token_name).2 AS String) AS token_name,
       CAST(max(owner).2 AS String) AS owner,
       CAST(max(tenant).2 AS String) AS tenant,
       CAST(max(scopes).2 AS Array(String)) AS scopes,
       CAST(max(expires_at).2 AS Nullable(DateTime64(3, 'UTC'))) AS expires_at,
       CAST(max(lifecycle).2 AS String) AS lifecycle_status,
       CAST(nullIf(max(lifecycle).1, never) AS Nullable(DateTime64(9, 'UTC'))) AS lifecycle_at,
       multiIf(lifecycle_status IN ('revoked', 'disabled', 'rotated'), lifecycle_status,
               lifecycle_status = 'expired' OR expires_at <= now64(3), 'expired',
               'active') AS status,
       CAST(min(created_at) AS Nullable(DateTime64(9, 'UTC'))) AS created_at,
       CAST(max(last_used_at) AS Nullable(DateTime64(9, 'UTC'))) AS last_used_at,
       CAST(max(last_ip).2 AS IPv6) AS last_ip,
       CAST(sum(use_count) AS UInt64) AS use_count,
       CAST(sum(failure_count) AS UInt64) AS failure_count,
       CAST(min(first_seen) AS DateTime64(9, 'UTC')) AS first_seen,
       CAST(max(last_seen) AS DateTime64(9, 'UTC')) AS last_seen
FROM token_inventory_state
GROUP BY token_key;

-- First time each token was seen from each address: new-IP detection.
CREATE TABLE IF NOT EXISTS token_ip_first_seen
(
    token_key  String,
    client_ip  IPv6,
    first_seen SimpleAggregateFunction(min, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (token_key, client_ip);

CREATE MATERIALIZED VIEW IF NOT EXISTS token_ip_first_seen_mv TO token_ip_first_seen AS
SELECT token_key, client_ip, toDateTime(min(event_time)) AS first_seen
FROM token_events
WHERE client_ip != toIPv6('::')
GROUP BY token_key, client_ip;

