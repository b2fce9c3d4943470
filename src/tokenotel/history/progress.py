"""What an import has committed so far, per file: an import that was interrupted (even killed)
starts again where the store's commits stopped, and a file imported whole is not read again.

The file (``import-progress.json`` in the data directory) maps each file (its absolute path and
a digest of its first bytes) to the byte offset and line number up to which every line was
committed to the store, and whether the whole file was. It is written after each commit, by
writing a new file and renaming it over the old one, so it is always whole; a line committed
after its last write is read again, and its events are then dropped as already stored.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tokenotel.history.files import FileIdentity

PROGRESS_FILE = "import-progress.json"
_VERSION = 1


@dataclass
class FileProgress:
    offset: int = 0  # bytes committed (of the decompressed text)
    line: int = 0  # lines committed
    complete: bool = False


class Progress:
    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self._files: dict[str, FileProgress] = {}
        #: Each file's requests not yet committed, in the order they were made:
        #: [end offset, end line, done].
        self._pending: dict[str, deque[list[int]]] = {}
        self._load()

    @staticmethod
    def _key(identity: FileIdentity) -> str:
        return f"{identity.path}\0{identity.head}"

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            files = document["sources"].get(self.source, {}) if document["v"] == _VERSION else {}
            self._files = {
                key: FileProgress(int(v["offset"]), int(v["line"]), bool(v["complete"]))
                for key, v in files.items()
            }
            self._other = {k: v for k, v in document["sources"].items() if k != self.source}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._files = {}
            self._other = {}

    def of(self, identity: FileIdentity) -> FileProgress:
        """What was committed of the file so far (nothing for a file not seen before)."""
        return self._files.setdefault(self._key(identity), FileProgress())

    def sent(self, identity: FileIdentity, end_offset: int, end_line: int) -> list[int]:
        """Notes a request holding the file's lines up to ``end_offset``/``end_line``; the
        span returned is handed back to ``committed`` once its rows are."""
        span = [end_offset, end_line, 0]
        self._pending.setdefault(self._key(identity), deque()).append(span)
        return span

    def committed(self, identity: FileIdentity, span: list[int]) -> None:
        """The request of ``span`` was committed: the file's progress moves up to the end of
        the longest run of committed requests from its start."""
        key = self._key(identity)
        span[2] = 1
        spans = self._pending[key]
        progress = self._files.setdefault(key, FileProgress())
        while spans and spans[0][2]:
            end_offset, end_line, _ = spans.popleft()
            progress.offset, progress.line = end_offset, end_line

    def complete(self, identity: FileIdentity) -> None:
        """Every line of the file was committed."""
        self._files.setdefault(self._key(identity), FileProgress()).complete = True

    def save(self) -> None:
        sources = dict(self._other)
        sources[self.source] = {
            key: {"offset": p.offset, "line": p.line, "complete": p.complete}
            for key, p in self._files.items()
        }
        temporary = self.path.with_name(self.path.name + ".new")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump({"v": _VERSION, "sources": sources}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
