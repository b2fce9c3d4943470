"""The seal a report carries: the SHA-256 of the file with the seal replaced by a placeholder,
the period and checkpoint it covers, as a note signed with the trail's signing key (the key
that signs its checkpoints) — or unsigned when there is none. ``tokenotel verify --report``
checks it (docs/report.md, "Checking a report")."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from tokenotel.errors import ConfigError
from tokenotel.integrity.signing import Note, SigningKey, VerifierKey
from tokenotel.report.model import Report

MARK = "tokenotel-report-seal:"
#: Where the seal goes, in the file as its digest is taken.
PLACEHOLDER = MARK + "sealing"
_SEAL = re.compile(rb"tokenotel-report-seal:([A-Za-z0-9+/=]+)")
HEADER = "tokenotel report"


def statement(report: Report, digest: str) -> str:
    """What the seal says (a signed note's text)."""
    data = report.header()
    return (
        f"{HEADER}\n"
        f"sha256 {digest}\n"
        f"period {data['since']} {data['until']}\n"
        f"checkpoint {report.checkpoint or 'none'}\n"
    )


def seal(content: bytes, report: Report, key: SigningKey | None) -> bytes:
    """``content`` (holding PLACEHOLDER once) with the seal in its place."""
    if content.count(PLACEHOLDER.encode()) != 1:
        raise ValueError("a report to seal holds its placeholder exactly once")
    text = statement(report, hashlib.sha256(content).hexdigest())
    note = key.sign(text) if key is not None else text
    sealed = MARK + base64.b64encode(note.encode()).decode()
    return content.replace(PLACEHOLDER.encode(), sealed.encode())


def append_placeholder(pdf: bytes) -> bytes:
    """A PDF carries its seal as a comment after its end (readers ignore it)."""
    return pdf + b"\n%" + PLACEHOLDER.encode() + b"\n"


@dataclass(frozen=True)
class Checked:
    """What ``check`` found: the digest matches (``intact``), who signed, what it covers."""

    intact: bool
    signer: VerifierKey | None
    signed: bool  # it carries a signature (by a trusted key or not)
    statement: str

    @property
    def ok(self) -> bool:
        return self.intact and (self.signer is not None or not self.signed)


def check(content: bytes, keys: list[VerifierKey]) -> Checked:
    """Checks a sealed report; raises ConfigError when it carries no seal it can read."""
    found = list(_SEAL.finditer(content))
    if len(found) != 1:
        raise ConfigError(
            "not a sealed tokenotel report: "
            + ("no seal in it" if not found else f"{len(found)} seals in it")
        )
    match = found[0]
    try:
        note = base64.b64decode(match[1], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError("the report's seal is not readable") from None
    signed = "\n\n" in note
    try:
        text = Note.parse(note).text if signed else note
    except ValueError as e:
        raise ConfigError(f"the report's seal is malformed: {e}") from None
    lines = dict(line.partition(" ")[::2] for line in text.splitlines()[1:])
    if not text.startswith(HEADER + "\n") or "sha256" not in lines:
        raise ConfigError("the report's seal is not a tokenotel report statement")
    unsealed = content[: match.start()] + PLACEHOLDER.encode() + content[match.end() :]
    intact = hashlib.sha256(unsealed).hexdigest() == lines["sha256"]
    signer = Note.parse(note).signed_by(keys) if signed else None
    return Checked(intact, signer, signed, text)
