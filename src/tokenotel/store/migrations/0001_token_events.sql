-- 0001: one row per token event. Sorted by token (its id, else its fingerprint), so one
-- token's history is a range read, and per-token values (fingerprint, owner, scopes) repeat
-- in runs that compress to almost nothing. Monthly partitions keep those runs long (daily
-- ones cost a third more space) and let retention drop whole months. observed_time is kept
-- as its delay after event_time: a few bytes, where a second timestamp would cost as much
-- as event_time itself.
CREATE TABLE IF NOT EXISTS token_events
(
    event_time          DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    observed_delay_ns   Int64 CODEC(ZSTD(1)),
    observed_time       DateTime64(9, 'UTC') ALIAS event_time + toIntervalNanosecond(observed_delay_ns),
    event_name          LowCardinality(String),
    outcome             LowCardinality(String),
    failure_reason      LowCardinality(String),
    token_fingerprint   String CODEC(ZSTD(1)),
    token_id            String CODEC(ZSTD(1)),
    token_key           String MATERIALIZED if(token_id != '', token_id, token_fingerprint),
    token_type          LowCardinality(String),
    token_name          String CODEC(ZSTD(1)),
    token_hint          String CODEC(ZSTD(1)),
    previous_token_id   String CODEC(ZSTD(1)),
    principal_id        String CODEC(ZSTD(1)),
    principal_type      LowCardinality(String),
    actor_id            String CODEC(ZSTD(1)),
    tenant              LowCardinality(String),
    client_ip           IPv6,
    user_agent          String CODEC(ZSTD(1)),
    country             LowCardinality(String),
    asn                 UInt32,
    scopes              Array(LowCardinality(String)),
    scopes_added        Array(LowCardinality(String)),
    scopes_removed      Array(LowCardinality(String)),
    expires_at          Nullable(DateTime64(3, 'UTC')),
    issued_at           Nullable(DateTime64(3, 'UTC')),
    http_method         LowCardinality(String),
    http_route          LowCardinality(String),
    url_path            String CODEC(ZSTD(1)),
    http_status         UInt16,
    request_id          String CODEC(ZSTD(1)),
    reason              LowCardinality(String),
    source              LowCardinality(String),
    service_name        LowCardinality(String),
    environment         LowCardinality(String),
    scope_name          LowCardinality(String),
    trace_id            String CODEC(ZSTD(1)),
    span_id             String CODEC(ZSTD(1)),
    severity_text       LowCardinality(String),
    severity_number     UInt8,
    body                String CODEC(ZSTD(1)),
    attributes          Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta(8), ZSTD(1)),
    INDEX idx_fingerprint token_fingerprint TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_principal principal_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_client_ip client_ip TYPE minmax GRANULARITY 4,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_ingested_at ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (token_key, event_time);

-- Ids of the events written lately, so a request retried after a restart stores nothing
-- twice. The ingest path also keeps them in memory; this table only outlives the process.
-- Ids are written before their events, both stamped with the same ingested_at: at start,
-- only ids whose stamp is found in token_events count, so a crash between the two inserts
-- neither loses events nor lets their retry store them twice.
CREATE TABLE IF NOT EXISTS recent_event_ids
(
    event_id    UInt64,
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY ingested_at
TTL toDateTime(ingested_at) + INTERVAL 1 DAY;
