-- 0007: tamper evidence (docs/tamper-evidence.md). Every committed insert is one leaf per
-- month of events it wrote: its sequence number (its index in the Merkle tree), its stamp
-- (the ingested_at of its rows), the month, how many rows, their oldest and newest event time,
-- and the SHA-256 of those rows in canonical form. Leaves are appended in commit order by the
-- one writer and kept for good (a leaf is 78 bytes; it outlives the rows it seals).
CREATE TABLE IF NOT EXISTS ledger
(
    sequence     UInt64,
    ingested_at  DateTime64(3, 'UTC'),
    partition    UInt32,
    rows         UInt64,
    oldest_event DateTime64(9, 'UTC'),
    newest_event DateTime64(9, 'UTC'),
    recovered    Bool,
    rows_sha256  FixedString(32)
)
ENGINE = MergeTree
ORDER BY sequence;

-- Signed checkpoints of the tree (C2SP tlog-checkpoint in a signed note), as published; with
-- the roots of the tree's perfect subtrees at that size (hex), so the writer goes on from the
-- newest one without reading every leaf. Kept for good, a row a minute at most.
CREATE TABLE IF NOT EXISTS checkpoints
(
    tree_size   UInt64,
    time        DateTime64(3, 'UTC'),
    note        String,
    subtrees    String
)
ENGINE = MergeTree
ORDER BY (tree_size, time);
