-- 0009: the alerts the service's detection rules raised (docs/detection.md), one row each: the
-- rule, the key it alerted on (token, IP ...), how many events from the first to the last, and
-- until when the rule stays quiet for that key. Read at start, so a restart does not raise
-- again what was raised already; read by the Security dashboard. Written by the service, a
-- few rows a minute at most.
CREATE TABLE IF NOT EXISTS token_alerts
(
    raised_at       DateTime64(3, 'UTC'),
    rule            LowCardinality(String),
    severity        LowCardinality(String),
    token_key       String,
    token_name      String,
    principal       String,
    client_ip       String,
    labels          Map(String, String),
    event_count     UInt64,
    first_event     DateTime64(9, 'UTC'),
    last_event      DateTime64(9, 'UTC'),
    quiet_until     DateTime64(9, 'UTC'),
    description     String,
    link            String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(raised_at)
ORDER BY (raised_at, rule);
