-- 0011: the analytics rollups (token_minutes, event_minutes, token_hours, ip_failure_minutes,
-- token_ip_first_seen) are computed from token_events_feed, a table that keeps nothing
-- (engine Null) and hands each block inserted into it to their views.
--
-- ClickHouse prepares every view of a table again for each insert, whatever its size: the
-- five views cost as much for an insert of a few thousand events as for one of a hundred
-- thousand. An insert into token_events still reaches them at once, through
-- token_events_feed_mv. The embedded store's service sends its inserts with the log comment
-- 'tokenotel: rollups fed after commit': the view passes nothing on, and the service inserts
-- the committed events into token_events_feed itself, a second's worth at a time
-- (docs/schema.md, "Rollups"). token_inventory_state and token_aliases keep their views on
-- token_events: reads need them as soon as an insert is committed.
--
-- A column added to token_events later is added to token_events_feed too.
CREATE TABLE IF NOT EXISTS token_events_feed AS token_events ENGINE = Null;

-- No back-fill: the events stored before it are counted in the rollups already.
CREATE MATERIALIZED VIEW IF NOT EXISTS token_events_feed_mv TO token_events_feed AS
SELECT * FROM token_events
WHERE getSetting('log_comment') != 'tokenotel: rollups fed after commit';

-- The same views, reading the feed. (Dropped and created again: a view's source cannot be
-- changed in place. Their back-fill reads the empty feed and adds nothing.)
DROP TABLE IF EXISTS token_minutes_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS token_minutes_mv TO token_minutes AS
SELECT token_key, toStartOfMinute(event_time) AS minute, event_name, outcome, count() AS events
FROM token_events_feed
GROUP BY token_key, minute, event_name, outcome;

DROP TABLE IF EXISTS event_minutes_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS event_minutes_mv TO event_minutes AS
SELECT toStartOfMinute(event_time) AS minute, event_name, outcome, failure_reason, token_status,
       service_name, environment, source, count() AS events
FROM token_events_feed
GROUP BY minute, event_name, outcome, failure_reason, token_status, service_name, environment, source;

DROP TABLE IF EXISTS token_hours_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS token_hours_mv TO token_hours AS
SELECT toStartOfHour(event_time) AS hour, token_key, count() AS events,
       countIf(outcome = 'failure') AS failures
FROM token_events_feed
GROUP BY hour, token_key;

DROP TABLE IF EXISTS ip_failure_minutes_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS ip_failure_minutes_mv TO ip_failure_minutes AS
SELECT toStartOfMinute(event_time) AS minute, client_ip, count() AS failures,
       uniqState(token_key) AS tokens
FROM token_events_feed
WHERE outcome = 'failure'
GROUP BY minute, client_ip;

DROP TABLE IF EXISTS token_ip_first_seen_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS token_ip_first_seen_mv TO token_ip_first_seen AS
SELECT token_key, client_ip, toDateTime(min(event_time)) AS first_seen
FROM token_events_feed
WHERE client_ip != toIPv6('::')
GROUP BY token_key, client_ip;
