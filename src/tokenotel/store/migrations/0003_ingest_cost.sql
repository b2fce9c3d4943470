-- 0003: the same tables for less insert CPU.
--
-- Events arrive in many small inserts (one per group commit). ClickHouse merges parts of a
-- similar size five at a time by default, so an event is rewritten three or four times on
-- its way into a large part; twenty at a time rewrites it about half as often, for a few more
-- parts to read while merges catch up.
ALTER TABLE token_events MODIFY SETTING merge_selector_base = 20;

-- The inventory's newest values as (newest time with a value, the value at that time) from
-- maxIf and argMaxIf, instead of a (time, value) tuple built for every event: the same state,
-- 40% less CPU per event. (Two values at the very same nanosecond keep either one.)
ALTER TABLE token_inventory_mv MODIFY QUERY
WITH multiIf(event_name IN ('token.created', 'token.enabled'), 'active',
             event_name = 'token.disabled', 'disabled',
             event_name = 'token.revoked', 'revoked',
             event_name = 'token.expired', 'expired', '') AS lifecycle_now
SELECT token_key,
       max(token_id) AS token_id,
       (maxIf(event_time, token_type != ''),
        toString(argMaxIf(token_type, event_time, token_type != ''))) AS token_type,
       (maxIf(event_time, token_name != ''),
        argMaxIf(token_name, event_time, token_name != '')) AS token_name,
       (maxIf(event_time, principal_id != ''),
        argMaxIf(principal_id, event_time, principal_id != '')) AS owner,
       (maxIf(event_time, tenant != ''),
        toString(argMaxIf(tenant, event_time, tenant != ''))) AS tenant,
       (maxIf(event_time, notEmpty(scopes)),
        CAST(argMaxIf(scopes, event_time, notEmpty(scopes)), 'Array(String)')) AS scopes,
       (maxIf(event_time, expires_at IS NOT NULL),
        argMaxIf(expires_at, event_time, expires_at IS NOT NULL)) AS expires_at,
       (maxIf(event_time, lifecycle_now != ''),
        argMaxIf(lifecycle_now, event_time, lifecycle_now != '')) AS lifecycle,
       min(if(event_name = 'token.created', event_time, NULL)) AS created_at,
       max(if(event_name = 'token.used' AND outcome = 'success', event_time, NULL)) AS last_used_at,
       (maxIf(event_time, event_name = 'token.used'),
        argMaxIf(client_ip, event_time, event_name = 'token.used')) AS last_ip,
       countIf(event_name = 'token.used') AS use_count,
       countIf(outcome = 'failure') AS failure_count,
       min(event_time) AS first_seen,
       max(event_time) AS last_seen
FROM token_events
GROUP BY token_key;
