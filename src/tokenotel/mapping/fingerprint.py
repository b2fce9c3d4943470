"""Keyed fingerprints of token secrets: HMAC-SHA256 under a key with an id, so keys can rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenotel.errors import FingerprintKeyError

log = logging.getLogger(__name__)

PREFIX = "hmac-sha256"
KEY_FILE_NAME = "fingerprint.key"


@dataclass(frozen=True)
class Fingerprinter:
    """Turns a raw secret into ``hmac-sha256:<key id>:<64 hex digits>``.

    The key id is the first 8 hex digits of SHA-256 of the key itself, so it names the key
    without revealing it and changes when the key does.
    """

    key: bytes
    #: The HMAC with the key already in it (each fingerprint starts from a copy: 0.9 µs where a
    #: new HMAC took 1.9), and what every fingerprint starts with.
    _keyed: Any = field(init=False, repr=False, compare=False)
    _prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.key, digestmod=hashlib.sha256))
        object.__setattr__(self, "_prefix", f"{PREFIX}:{self.key_id}:")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:8]

    def __call__(self, secret: str) -> str:
        mac = self._keyed.copy()
        mac.update(secret.encode("utf-8"))
        return self._prefix + mac.hexdigest()

    def __reduce__(self) -> tuple[Any, ...]:  # the key alone: an HMAC does not pickle
        return Fingerprinter, (self.key,)

    def __repr__(self) -> str:  # never show the key
        return f"Fingerprinter(key_id={self.key_id!r})"


def github_hashed_token(secret: str) -> str:
    """The hash GitHub's audit log keeps of a token (``hashed_token``): base64 of its SHA-256.
    Not keyed, so anyone holding the token can compute it; stored as the source sent it
    (``token_hash``), it lets a search by the secret find GitHub's events of that token."""
    return base64.b64encode(hashlib.sha256(secret.encode("utf-8")).digest()).decode("ascii")


def load_previous_keys(key_files: Sequence[Path]) -> tuple[Fingerprinter, ...]:
    """The keys used before a rotation (``previous_fingerprint_key_files``), in order: a
    search for a secret computes its fingerprint under each too (docs/keys.md)."""
    return tuple(Fingerprinter(_read_key(path)) for path in key_files)


def load_key(key_file: Path | None, data_dir: Path, *, create: bool = True) -> Fingerprinter:
    """The key from ``key_file``; without one, ``<data_dir>/fingerprint.key`` (created if allowed).

    The file holds the key as hex (64 digits = 32 bytes recommended; at least 16 bytes).
    """
    if key_file is not None:
        return Fingerprinter(_read_key(key_file))
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return Fingerprinter(_read_key(path))
    if not create:
        raise FingerprintKeyError(
            f"no fingerprint key in {data_dir}: point --data-dir at the service's data directory "
            "or set TOKENOTEL_FINGERPRINT_KEY_FILE"
        )
    # The user's alone, as the store's data directory (its mode when tokenotel makes it).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    fingerprinter = Fingerprinter(key)
    log.warning(
        "no fingerprint key configured: created a random key (id %s) in %s; keep it with the "
        "data, or set TOKENOTEL_FINGERPRINT_KEY_FILE to use your own",
        fingerprinter.key_id,
        path,
    )
    return fingerprinter


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise FingerprintKeyError(f"cannot read fingerprint key file {path}: {e.strerror}") from e
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise FingerprintKeyError(
            f"fingerprint key file {path} must hold the key as hex digits"
        ) from None
    if len(key) < 16:
        raise FingerprintKeyError(
            f"fingerprint key in {path} is {len(key)} bytes; use at least 16 (32 recommended)"
        )
    return key
