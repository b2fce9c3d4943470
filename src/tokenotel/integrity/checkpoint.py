"""Checkpoints: the ledger's tree head as a C2SP tlog-checkpoint note, stored and read back.

The note text, one item a line::

    <origin>                      the log: the signing key's name (host/tokenotel/database)
    <tree size>                   leaves (sealed insert months) in the tree
    <root>                        base64 of the RFC 9162 tree head
    time <UTC, ms>                when it was made
    retention-days <n>            the retention in force: older months may be gone
    final                         only in the one made as the service stops

then a blank line and the signature line. The three first lines are the checkpoint format's;
the others are its optional extension lines.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from tokenotel.integrity.signing import Note, SigningKey, VerifierKey
from tokenotel.store.client import Store
from tokenotel.store.ledger import CHECKPOINTS_TABLE, TreeHead

_TIME = "%Y-%m-%dT%H:%M:%S"
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
CHECKPOINTS_SQL = f"""
SELECT note FROM {CHECKPOINTS_TABLE}
WHERE time >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC')
ORDER BY tree_size, time
"""
_STORED = pa.schema(
    [
        ("tree_size", pa.uint64()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("note", pa.string()),
        ("subtrees", pa.string()),
    ]
)


def format_time(ms: int) -> str:
    seconds, fraction = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):{_TIME}}.{fraction:03d}Z"


def parse_time(text: str) -> int:
    moment = datetime.strptime(text, f"{_TIME}.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000 + 0.5)


@dataclass(frozen=True)
class Checkpoint:
    """One signed tree head (its note is what is published and stored)."""

    origin: str
    size: int
    root: bytes
    time_ms: int
    retention_days: int
    final: bool
    note: str

    @classmethod
    def make(
        cls, key: SigningKey, head: TreeHead, time_ms: int, retention_days: int, final: bool
    ) -> Checkpoint:
        lines = [
            key.name,
            str(head.size),
            base64.b64encode(head.root).decode(),
            f"time {format_time(time_ms)}",
            f"retention-days {retention_days}",
        ]
        if final:
            lines.append("final")
        note = key.sign("\n".join(lines) + "\n")
        return cls(key.name, head.size, head.root, time_ms, retention_days, final, note)

    @classmethod
    def parse(cls, note: str) -> Checkpoint:
        """Reads a checkpoint note (signatures not checked: see ``signer``); raises ValueError."""
        text = Note.parse(note).text
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0]:
            raise ValueError("not a checkpoint: fewer than three lines")
        origin, size, root, *extensions = lines
        if not _DECIMAL.match(size):
            raise ValueError(f"tree size {size!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise ValueError("the root hash is not base64") from None
        if len(root_hash) != 32:
            raise ValueError("the root hash is not 32 bytes")
        fields = dict(line.partition(" ")[::2] for line in extensions)
        try:
            time_ms = parse_time(fields["time"])
            retention_days = int(fields["retention-days"])
        except (KeyError, ValueError):
            raise ValueError("no time or retention-days line") from None
        return cls(origin, int(size), root_hash, time_ms, retention_days, "final" in fields, note)

    def signer(self, keys: list[VerifierKey]) -> VerifierKey | None:
        """The trusted key whose signature on the note verifies, if any."""
        return Note.parse(self.note).signed_by(keys)

    @property
    def file_name(self) -> str:
        """Where it is published: by tree size and time, in a folder a day."""
        stamp = format_time(self.time_ms).replace(":", "").replace("-", "")
        return f"{stamp[:8]}/{self.size:012d}-{stamp}.checkpoint"


def store_checkpoint(store: Store, checkpoint: Checkpoint, head: TreeHead) -> None:
    """Keeps a checkpoint with the data, with the tree's subtrees to go on from."""
    row = [
        [checkpoint.size],
        pa.array([checkpoint.time_ms], pa.int64()).cast(pa.timestamp("ms", "UTC")),
        [checkpoint.note],
        [head.subtrees.hex()],
    ]
    store.insert_arrow(CHECKPOINTS_TABLE, pa.table(row, schema=_STORED))


def stored_checkpoints(store: Store, since_ms: int = 0) -> list[str]:
    """The notes of the checkpoints in the store, by tree size and time."""
    return [row[0] for row in store.query(CHECKPOINTS_SQL, {"since": since_ms}).result_rows]
