"""tokenotel's own credentials (docs/security.md, "Authentication and roles"): the format, a file
that keeps only hashes (mode 0600, replaced whole), the check of a presented credential and its
reasons, and a running service's view that follows the file."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from tokenotel.errors import ConfigError, InvalidArgument, NotFound
from tokenotel.security.credentials import (
    CREDENTIAL_RE,
    Credential,
    CredentialFile,
    Failure,
    Role,
    add_credential,
    digest,
    read_credentials,
    revoke_credential,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "credentials.json"


def ids_in(path: Path) -> set[str]:
    return {c.id for c in read_credentials(path)}


def test_a_new_credential_has_the_documented_format_and_only_its_hash_is_kept(path: Path) -> None:
    record, credential = add_credential(path, Role.INGEST, "gateway-eu-1", actor="ops")
    match = CREDENTIAL_RE.fullmatch(credential)
    assert match is not None and match["id"] == record.id
    assert len(match["secret"]) == 43  # 32 random bytes, URL-safe base64 without padding
    assert (record.name, record.role, record.created_by, record.revoked) == (
        "gateway-eu-1",
        Role.INGEST,
        "ops",
        None,
    )
    text = path.read_text()
    assert credential not in text and match["secret"] not in text
    assert json.loads(text)["credentials"][0]["sha256"] == digest(credential)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "sha256" not in repr(record) and record.sha256 not in repr(record)


def test_every_credential_is_new_and_without_a_name_is_named_by_its_role(path: Path) -> None:
    made = [add_credential(path, Role.READ) for _ in range(20)]
    assert len({credential for _, credential in made}) == 20
    assert len({record.id for record, _ in made}) == 20
    assert all(record.name == f"read-{record.id}" for record, _ in made)
    assert [c.id for c in read_credentials(path)] == [record.id for record, _ in made]


def test_a_name_must_be_plain(path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a plain name"):
        add_credential(path, Role.READ, "two words\n")
    assert not path.exists()


def test_concurrent_adds_are_all_kept(path: Path) -> None:
    """Writers take a lock: none overwrites another's credential."""
    threads = [threading.Thread(target=add_credential, args=(path, Role.INGEST)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_credentials(path)) == 8


def test_revoke_keeps_the_credential_and_notes_when_and_by_whom(path: Path) -> None:
    kept, _ = add_credential(path, Role.READ)
    gone, _ = add_credential(path, Role.ADMIN)
    revoked, now = revoke_credential(path, gone.id, actor="alice")
    assert now and revoked.revoked is not None and revoked.revoked_by == "alice"
    again, now = revoke_credential(path, gone.id, actor="bob")
    assert not now and again == revoked  # the first revocation stands
    assert read_credentials(path) == [kept, revoked]
    with pytest.raises(NotFound, match="tokenotel auth list"):
        revoke_credential(path, "00000000")


def test_roles_allow_their_own_calls_and_admin_allows_every_call() -> None:
    assert Role.INGEST.allows(Role.INGEST) and not Role.INGEST.allows(Role.READ)
    assert Role.READ.allows(Role.READ) and not Role.READ.allows(Role.INGEST)
    assert not Role.READ.allows(Role.ADMIN) and not Role.INGEST.allows(Role.ADMIN)
    assert all(Role.ADMIN.allows(need) for need in Role)


def test_a_presented_credential_is_valid_or_refused_with_its_reason(path: Path) -> None:
    record, credential = add_credential(path, Role.INGEST)
    revoked, revoked_credential = add_credential(path, Role.READ)
    revoke_credential(path, revoked.id)
    loaded: list[list[Credential]] = []
    view = CredentialFile(path, loaded.append)

    def reason(presented: str) -> tuple[str | None, Failure | None]:
        verdict = view.verify(presented)
        return (verdict.credential.id if verdict.credential else None), verdict.failure

    wrong_secret = credential[:13] + ("A" if credential[13] != "A" else "B") + credential[14:]
    other_id = next(i for i in ("00000000", "11111111", "22222222") if i not in ids_in(path))
    unknown_id = f"tko_{other_id}" + credential[12:]
    assert reason(credential) == (record.id, None)
    assert reason(wrong_secret) == (record.id, Failure.INVALID)
    assert reason(unknown_id) == (None, Failure.UNKNOWN)
    assert reason(revoked_credential) == (revoked.id, Failure.REVOKED)
    assert reason("not-a-credential") == (None, Failure.MALFORMED)
    assert reason(credential + "x") == (None, Failure.MALFORMED)
    assert len(loaded) == 1  # read once: the file did not change


def test_the_service_view_follows_the_file_without_a_restart(path: Path) -> None:
    """A revoke (by `tokenotel auth revoke`, another process) counts from the next check on."""
    record, credential = add_credential(path, Role.INGEST)
    loaded: list[list[Credential]] = []
    view = CredentialFile(path, loaded.append)
    assert view.verify(credential).failure is None
    revoke_credential(path, record.id)
    assert view.verify(credential).failure is Failure.REVOKED
    added, new_credential = add_credential(path, Role.READ)
    assert view.verify(new_credential).credential == added
    assert [len(credentials) for credentials in loaded] == [1, 1, 2]


def test_a_missing_or_damaged_file_refuses_everything(path: Path) -> None:
    """Fail closed: a file that cannot be read is no credential at all, never the last good
    one (which might still hold a credential revoked since)."""
    _, credential = add_credential(path, Role.ADMIN)
    view = CredentialFile(path, lambda _: None)
    assert view.verify(credential).failure is None
    path.write_text("{ not json")
    assert view.verify(credential).failure is Failure.UNKNOWN
    with pytest.raises(ConfigError, match="damaged"):
        read_credentials(path)
    path.unlink()
    assert view.verify(credential).failure is Failure.UNKNOWN
    assert read_credentials(path) == []
