"""Signed notes (C2SP signed-note) with Ed25519: the signing key, its public key, signatures.

A note is a text ending in a newline, a blank line, and signature lines
``— <key name> <base64(key id || signature)>``. The key id is the first four bytes of
SHA-256(key name || 0x0A || 0x01 || public key), 0x01 naming Ed25519.

Key files use the encodings of Go's golang.org/x/mod/sumdb/note, so other tools read them:
the signing key ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>`` and the
public (verifier) key ``<name>+<hex key id>+<base64(0x01 || 32-byte public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tokenotel.errors import SigningKeyError

log = logging.getLogger(__name__)

ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_NAME = re.compile(r"^[^\s+]+$")
#: Most signature lines read from one note (the specification asks for at least 16).
MOST_SIGNATURES = 16


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def default_key_name(database: str) -> str:
    """A name for a new key: this host and database, as a schema-less URL path."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
    return f"{host}/tokenotel/{database}"


@dataclass(frozen=True)
class VerifierKey:
    """A public key that signatures are checked with."""

    name: str
    id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """From ``<name>+<hex id>+<base64(0x01 || key)>``; raises ValueError."""
        try:
            name, hex_id, encoded = text.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
            key = cls(name, bytes.fromhex(hex_id), raw[1:])
        except (ValueError, binascii.Error):
            raise ValueError("not a verifier key (<name>+<hex key id>+<base64 key>)") from None
        if not _NAME.match(name) or raw[:1] != ED25519 or len(key.public_key) != 32:
            raise ValueError("not an Ed25519 verifier key")
        if key_id(name, key.public_key) != key.id:
            raise ValueError("its key id does not match its name and key")
        return key

    def __str__(self) -> str:
        encoded = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{encoded}"

    def verifies(self, text: str, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text.encode())
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """The private key checkpoints are signed with. Never printed: its repr shows the public
    key's name and id only."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not _NAME.match(name):
            raise SigningKeyError(
                f"signing key name {name!r} has a space or a '+': create the key again"
            )
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._private.public_key().public_bytes_raw()
        self.verifier = VerifierKey(name, key_id(name, public), public)

    @property
    def name(self) -> str:
        return self.verifier.name

    def __repr__(self) -> str:
        return f"SigningKey({self.verifier.name}+{self.verifier.id.hex()})"

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which ends in a newline)."""
        if not text.endswith("\n") or "\n\n" in text:
            raise ValueError("a note's text ends in one newline and has no empty line")
        signature = self.verifier.id + self._private.sign(text.encode())
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {base64.b64encode(signature).decode()}\n"

    def encoded(self) -> str:
        """The key file's content (secret)."""
        seed = self._private.private_bytes_raw()
        encoded = base64.b64encode(ED25519 + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.id.hex()}+{encoded}"


def load_signing_key(path: Path, name: str, *, create: bool = True) -> SigningKey:
    """The signing key in ``path``; created (mode 0600, a random key named ``name``) when
    absent and ``create``, with its public key beside it (``<path>.pub``)."""
    if not path.exists() and create:
        key = SigningKey(name, os.urandom(32))
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(key.encoded() + "\n")
        public_path(path).write_text(f"{key.verifier}\n", encoding="ascii")
        log.warning(
            "no signing key configured: created one in %s (public key %s, also in %s); keep a "
            "copy of the public key off this machine to verify checkpoints with",
            path,
            key.verifier,
            public_path(path),
        )
        return key
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SigningKeyError(
            f"no signing key in {path}: start `tokenotel serve` once to create it, or set "
            "signing_key_file"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SigningKeyError(f"cannot read the signing key in {path}: {e}") from None
    try:
        prefix, kind, key_name, hex_id, encoded = text.split("+", 4)
        raw = base64.b64decode(encoded, validate=True)
        if (prefix, kind) != ("PRIVATE", "KEY") or raw[:1] != ED25519 or len(raw) != 33:
            raise ValueError
        key = SigningKey(key_name, raw[1:])
    except (ValueError, binascii.Error):
        raise SigningKeyError(
            f"{path} is not an Ed25519 signing key (PRIVATE+KEY+<name>+<id>+<key>): move it "
            "away and start again to create a new one"
        ) from None
    if key.verifier.id.hex() != hex_id:
        raise SigningKeyError(f"the key id in {path} does not match its key: the file is damaged")
    return key


def public_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.stem + ".pub")


@dataclass(frozen=True)
class Signature:
    name: str
    id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]

    @classmethod
    def parse(cls, note: str) -> Note:
        """Splits a signed note into its text and signatures; raises ValueError."""
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise ValueError("a signed note has a control character")
        text, blank, signed = note.rpartition("\n\n")
        if not blank or not signed.endswith("\n"):
            raise ValueError("no signature lines after a blank line")
        signatures = []
        for line in signed[:-1].split("\n"):
            if not line.startswith(SIGNATURE_PREFIX):
                raise ValueError(f"not a signature line: {line[:40]!r}")
            name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ValueError("a signature is not base64") from None
            if not _NAME.match(name) or len(raw) < 5:
                raise ValueError("a malformed signature line")
            signatures.append(Signature(name, raw[:4], raw[4:]))
        if len(signatures) > MOST_SIGNATURES:
            raise ValueError(f"more than {MOST_SIGNATURES} signatures")
        return cls(text + "\n", tuple(signatures))

    def signed_by(self, keys: list[VerifierKey]) -> VerifierKey | None:
        """The trusted key that signed the note, if one did and every signature of a trusted
        key verifies (a failing one rejects the note); signatures of other keys are ignored."""
        found = None
        for signature in self.signatures:
            for key in keys:
                if (key.name, key.id) == (signature.name, signature.id):
                    if not key.verifies(self.text, signature.signature):
                        return None
                    found = key
        return found
