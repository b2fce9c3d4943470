-- 0005: merge fifty similar parts of token_events at a time instead of twenty (0003).
--
-- Merging is the largest part of the store's CPU during ingest: each small insert is
-- rewritten until it sits in a large part, and each pass costs about 3 µs an event (mostly
-- its LowCardinality, array and map columns). Fifty at a time rewrites an event fewer times
-- on its way: the ingest benchmark used a tenth less CPU an event, and 80 MB less memory.
-- A month's partition then holds up to about a hundred and fifty active parts while merges
-- catch up, far below where ClickHouse slows inserts down (parts_to_delay_insert, 1,000).
ALTER TABLE token_events MODIFY SETTING merge_selector_base = 50;
