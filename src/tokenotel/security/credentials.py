"""tokenotel's own credentials: the ``tko_<id>_<secret>`` format, the file that keeps their
hashes and roles (never a secret), and the constant-time check of a presented credential.

The file is the one source of truth: ``tokenotel auth add|list|revoke`` change it whether the
service runs or not, and a running service reads it again as soon as it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tokenotel.errors import ConfigError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

FILE_NAME = "credentials.json"
FILE_FORMAT = "tokenotel-credentials/1"
PREFIX = "tko_"
#: ``tko_`` + 8 lowercase hex digits (the id) + ``_`` + 32 random bytes as URL-safe base64.
CREDENTIAL_RE = re.compile(r"tko_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,99}")
#: Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_NO_DIGEST = hashlib.sha256(b"no such credential").hexdigest()


class Role(StrEnum):
    """What a credential may do: ``ingest`` send OTLP logs, ``read`` use the query API, ``admin``
    both and the administrative calls."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"

    def allows(self, need: Role) -> bool:
        return self is Role.ADMIN or self is need


class Failure(StrEnum):
    """Why a presented credential was refused: kept in the trail (token.failure_reason), never
    told to the caller."""

    MISSING = "missing"  # no Authorization at all
    MALFORMED = "malformed"  # not ``Bearer tko_…``
    UNKNOWN = "unknown"  # no credential with that id
    INVALID = "invalid"  # the id exists, the secret is wrong
    REVOKED = "revoked"
    WRONG_ROLE = "insufficient_scope"  # valid, but its role may not do this


@dataclass(frozen=True)
class Credential:
    """One credential as the file keeps it: its SHA-256, never the credential itself."""

    id: str
    name: str
    role: Role
    created: datetime
    sha256: str = field(repr=False)
    created_by: str = ""
    revoked: datetime | None = None
    revoked_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "sha256": self.sha256,
            "created": _timestamp(self.created),
            "created_by": self.created_by,
            "revoked": _timestamp(self.revoked) if self.revoked else None,
            "revoked_by": self.revoked_by,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Credential:
        revoked = item.get("revoked")
        credential = cls(
            id=str(item["id"]),
            name=str(item["name"]),
            role=Role(item["role"]),
            sha256=str(item["sha256"]),
            created=datetime.fromisoformat(item["created"]),
            created_by=str(item.get("created_by", "")),
            revoked=datetime.fromisoformat(revoked) if revoked else None,
            revoked_by=str(item.get("revoked_by", "")),
        )
        if not re.fullmatch(r"[0-9a-f]{8}", credential.id) or len(credential.sha256) != 64:
            raise ValueError(f"credential {credential.id!r} has a malformed id or hash")
        return credential


def digest(credential: str) -> str:
    """What the file keeps of a credential: SHA-256 of the whole ``tko_…`` string, as hex. The
    secret is 256 random bits, so the hash needs no salt or stretching."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def credential_id(presented: str) -> str | None:
    """The id of a well-formed credential, else None."""
    match = CREDENTIAL_RE.fullmatch(presented)
    return match["id"] if match else None


# -- the file ----------------------------------------------------------------------------------


def read_credentials(path: Path) -> list[Credential]:
    """Every credential in the file (revoked ones too); none when it does not exist. Raises
    ConfigError naming the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the credentials file {path}: {e}") from None
    try:
        document = json.loads(text)
        if document.get("format") != FILE_FORMAT:
            raise ValueError(f"its format is not {FILE_FORMAT}")
        return [Credential.from_json(item) for item in document["credentials"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"the credentials file {path} is damaged ({e}); restore it from a backup, or move it "
            "away and add credentials again with `tokenotel auth add`"
        ) from None


def write_credentials(path: Path, credentials: list[Credential]) -> None:
    """Replaces the file as a whole (a reader sees the old file or the new one, never half),
    created mode 0600."""
    document = {"format": FILE_FORMAT, "credentials": [c.to_json() for c in credentials]}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # also when an old temporary file was left behind
            json.dump(document, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[Credential]]:
    """The file's credentials, with every other writer waiting until the block ends (two
    ``auth add`` at once both get in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield read_credentials(path)
    finally:
        os.close(fd)  # releases the lock


def add_credential(
    path: Path, role: Role, name: str | None = None, *, actor: str = ""
) -> tuple[Credential, str]:
    """A new credential in the file: returns its record and the credential itself, which exists
    nowhere else from now on (the file keeps only its hash)."""
    if name is not None and not _NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"name {name!r} is not a plain name: use up to 100 letters, digits and ._@:/+- "
            "(e.g. gateway-eu-1)",
            field="name",
        )
    with _locked(path) as credentials:
        taken = {c.id for c in credentials}
        new_id = secrets.token_hex(4)
        while new_id in taken:
            new_id = secrets.token_hex(4)
        credential = f"{PREFIX}{new_id}_{secrets.token_urlsafe(32)}"
        record = Credential(
            id=new_id,
            name=name or f"{role.value}-{new_id}",
            role=role,
            sha256=digest(credential),
            created=_now(),
            created_by=actor,
        )
        write_credentials(path, [*credentials, record])
    return record, credential


def revoke_credential(
    path: Path, credential_id: str, *, actor: str = ""
) -> tuple[Credential, bool]:
    """Marks a credential revoked; returns it and whether this call revoked it (False: it was
    already). Raises NotFound for an id the file does not have."""
    with _locked(path) as credentials:
        for i, credential in enumerate(credentials):
            if credential.id != credential_id:
                continue
            if credential.revoked is not None:
                return credential, False
            revoked = replace(credential, revoked=_now(), revoked_by=actor)
            credentials[i] = revoked
            write_credentials(path, credentials)
            return revoked, True
    raise NotFound(
        f"no credential {credential_id!r} in {path}: `tokenotel auth list` shows the ids"
    )


# -- the service's view ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The check of one presented credential: the credential it names (when it names one) and
    why it was refused (None: valid)."""

    credential: Credential | None
    failure: Failure | None


class CredentialFile:
    """The credentials file as the running service sees it: read again whenever it changed (a
    ``stat`` per check, so a revoke counts from the next request on), and ``on_load`` told
    each time. A file that cannot be read refuses everything until it can (fail closed)."""

    def __init__(self, path: Path, on_load: Callable[[list[Credential]], None]) -> None:
        self.path = path
        self._on_load = on_load
        self._seen: tuple[int, int, int, int] | None = None
        self._by_id: dict[str, Credential] = {}

    def refresh(self) -> None:
        """Reads the file again if it changed since it was last read."""
        try:
            st = os.stat(self.path)
            seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = (0, 0, 0, 0)
        except OSError as e:
            seen = (-1, 0, 0, 0)
            if self._seen != seen:
                log.error(
                    "cannot read the credentials file %s: %s; refusing every credential",
                    self.path,
                    e,
                )
        if seen == self._seen:
            return
        self._seen = seen
        try:
            credentials = read_credentials(self.path) if seen[0] > 0 else []
        except ConfigError as e:
            log.error("%s; refusing every credential until it is readable", e)
            credentials = []
        self._by_id = {c.id: c for c in credentials}
        active = sum(1 for c in credentials if c.revoked is None)
        log.info(
            "credentials file %s read: %d active, %d revoked",
            self.path,
            active,
            len(credentials) - active,
        )
        if not active:
            log.warning(
                "no active credential in %s: every request to the listeners is refused; add one "
                "with `tokenotel auth add --role ingest|read|admin`",
                self.path,
            )
        self._on_load(credentials)

    def verify(self, presented: str) -> Verdict:
        """Checks a presented credential in constant time: its hash against the one kept for its
        id (against a stand-in when the id is unknown, so both cost the same)."""
        self.refresh()
        wanted = credential_id(presented)
        credential = self._by_id.get(wanted) if wanted else None
        expected = credential.sha256 if credential else _NO_DIGEST
        matches = hmac.compare_digest(digest(presented), expected)
        if wanted is None:
            return Verdict(None, Failure.MALFORMED)
        if credential is None:
            return Verdict(None, Failure.UNKNOWN)
        if not matches:
            return Verdict(credential, Failure.INVALID)
        if credential.revoked is not None:
            return Verdict(credential, Failure.REVOKED)
        return Verdict(credential, None)


def _now() -> datetime:
    """Now, to the millisecond (as the file writes it)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
