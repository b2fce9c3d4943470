-- 0010: the service's own counters, a row a minute for each running service: the requests it
-- received and refused, the records it stored, ignored and rejected, the inserts it committed
-- and those that failed, and the mapping workers it replaced, each as the change since the
-- row before. The compliance report reads them for the times the service was failing
-- (docs/report.md, section 1). Written by the service once a minute; a row the store did not
-- take (it was down) is written with the next.
CREATE TABLE IF NOT EXISTS service_minutes
(
    minute            DateTime('UTC'),
    instance          LowCardinality(String),
    requests          UInt64,
    requests_refused  UInt64,
    records_stored    UInt64,
    records_ignored   UInt64,
    records_rejected  UInt64,
    inserts           UInt64,
    inserts_failed    UInt64,
    worker_restarts   UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, instance);
