-- 0008: which token each fingerprint and each source's hash of a secret belongs to, ordered by
-- them, so a search by either finds the token at once here. Without it the search read the
-- bloom filters of token_fingerprint and token_hash in every part of token_events: one filter
-- a granule, as large for a column of empty strings as for one of hashes.
CREATE TABLE IF NOT EXISTS token_aliases
(
    alias     String,  -- a fingerprint (hmac-sha256:...) or a source's hash of the secret
    token_key String
)
ENGINE = ReplacingMergeTree
ORDER BY (alias, token_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS token_aliases_mv TO token_aliases AS
SELECT alias, token_key
FROM token_events
ARRAY JOIN [token_fingerprint, token_hash] AS alias
WHERE alias != ''
GROUP BY alias, token_key;
