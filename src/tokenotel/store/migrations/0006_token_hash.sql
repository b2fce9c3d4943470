-- 0006: the hash a source itself keeps of a token's secret (GitHub's hashed_token, the base64
-- of its SHA-256; Vault's HMAC'd client token), so a search by it finds the events of a token
-- known by nothing else. Most rows leave it empty, which costs almost nothing; the bloom
-- filter lets a search by hash skip the granules without it.
ALTER TABLE token_events ADD COLUMN IF NOT EXISTS token_hash String CODEC(ZSTD(1)) AFTER token_id;
ALTER TABLE token_events ADD INDEX IF NOT EXISTS idx_token_hash token_hash TYPE bloom_filter(0.001) GRANULARITY 1;
