"""The files an import reads: paths, directories and globs made into a list of files, each read
as lines with their numbers and byte offsets (of the decompressed text, for ``.gz`` files)."""

from __future__ import annotations

import glob
import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tokenotel.errors import ConfigError

_GZIP_MAGIC = b"\x1f\x8b"
#: How much is read at a time.
_CHUNK = 1 << 20
#: How much of a file's start names it (with its path): a file rotated into its place, or
#: written anew, is another file.
_HEAD = 4096


def find_files(patterns: list[str]) -> list[Path]:
    """Every file the paths name: a file; a directory's files (recursively, hidden ones left
    out); a glob's matches (``**`` for any depth). In order, each once. Raises ConfigError for
    a path that names nothing."""
    found: list[Path] = []
    for pattern in patterns:
        matches: list[Path]
        path = Path(pattern)
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            matches = sorted(
                Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()
            )
        if not matches:
            raise ConfigError(f"{pattern}: no such file, directory or matching file")
        found += matches
    seen: set[Path] = set()
    unique = []
    for file in found:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(file)
    return unique


@dataclass(frozen=True)
class FileIdentity:
    """A file as the progress file knows it: its path and a digest of its first bytes."""

    path: str
    head: str

    @staticmethod
    def of(path: Path) -> FileIdentity:
        with path.open("rb") as f:
            head = f.read(_HEAD)
        return FileIdentity(str(path.resolve()), hashlib.blake2b(head, digest_size=16).hexdigest())


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_text(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (by content, whatever its name)."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # from 1
    end: int  # byte offset after the line (and its newline) in the (decompressed) text
    text: bytes  # without its line end


def read_lines(path: Path, start: int = 0, first_number: int = 1) -> Iterator[Line]:
    """The lines of ``path`` from byte ``start`` (of the decompressed text), the first numbered
    ``first_number``. Raises OSError (or zlib.error, EOFError) when the file cannot be read
    to its end: a truncated ``.gz`` file reads up to where it breaks."""
    number = first_number
    offset = start
    with open_text(path) as f:
        skip = start
        while skip:
            got = len(f.read(min(skip, _CHUNK)))
            if not got:
                return
            skip -= got
        rest = b""
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            data = rest + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            for text in lines:
                offset += len(text) + 1
                yield Line(number, offset, text.rstrip(b"\r"))
                number += 1
        if rest:
            offset += len(rest)
            yield Line(number, offset, rest.rstrip(b"\r"))


#: Errors a damaged compressed file raises while it is read.
READ_ERRORS = (OSError, EOFError, zlib.error)
