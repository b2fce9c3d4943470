"""Fingerprints: HMAC-SHA256 under a key with an id, and the key file in the data directory."""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
from pathlib import Path

import pytest

from tokenotel.errors import FingerprintKeyError
from tokenotel.mapping.fingerprint import (
    KEY_FILE_NAME,
    Fingerprinter,
    github_hashed_token,
    load_key,
    load_previous_keys,
)

KEY = bytes(range(32))


def test_fingerprint_is_hmac_sha256_under_the_key_with_its_id() -> None:
    secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
    digest = hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest()
    key_id = hashlib.sha256(KEY).hexdigest()[:8]
    assert Fingerprinter(KEY)(secret) == f"hmac-sha256:{key_id}:{digest}"


def test_fingerprint_depends_on_secret_and_key() -> None:
    fingerprint = Fingerprinter(KEY)
    other_key = Fingerprinter(bytes(32))
    assert fingerprint("a-token-1") == fingerprint("a-token-1")
    assert fingerprint("a-token-1") != fingerprint("a-token-2")
    assert fingerprint("a-token-1").split(":")[2] != other_key("a-token-1").split(":")[2]
    assert fingerprint.key_id != other_key.key_id


def test_unicode_secrets_are_hashed_as_utf8() -> None:
    digest = hmac.new(KEY, "clé-ключ".encode(), hashlib.sha256).hexdigest()
    assert Fingerprinter(KEY)("clé-ключ").endswith(":" + digest)


def test_repr_never_shows_the_key() -> None:
    text = repr(Fingerprinter(KEY))
    assert KEY.hex() not in text
    assert Fingerprinter(KEY).key_id in text


def test_first_load_creates_a_private_random_key_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        first = load_key(None, data_dir)
    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # a directory of secrets
    assert bytes.fromhex(path.read_text().strip()) == first.key
    assert len(first.key) == 32
    assert first.key_id in caplog.text
    assert first.key.hex() not in caplog.text
    # Loaded again, it is the same key; another data directory gets another key.
    assert load_key(None, data_dir).key == first.key
    assert load_key(None, tmp_path / "other").key != first.key


def test_configured_key_file_wins_over_the_data_directory(tmp_path: Path) -> None:
    key_file = tmp_path / "my.key"
    key_file.write_text(KEY.hex() + "\n")
    load_key(None, tmp_path)  # a key in the data directory too
    assert load_key(key_file, tmp_path).key == KEY


def test_without_create_a_missing_key_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(FingerprintKeyError, match="TOKENOTEL_FINGERPRINT_KEY_FILE"):
        load_key(None, tmp_path, create=False)
    assert not (tmp_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("not hex at all", "hex digits"), ("00ff00ff", "at least 16")],
)
def test_malformed_key_files_are_rejected(tmp_path: Path, content: str, message: str) -> None:
    key_file = tmp_path / "bad.key"
    key_file.write_text(content)
    with pytest.raises(FingerprintKeyError, match=message):
        load_key(key_file, tmp_path)


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FingerprintKeyError, match="cannot read"):
        load_key(tmp_path / "missing.key", tmp_path)


def test_previous_keys_fingerprint_a_secret_as_they_did_before_a_rotation(tmp_path: Path) -> None:
    """docs/keys.md: the old key, kept as a previous key, gives the fingerprint stored before
    the rotation; each fingerprint names its key."""
    old_key, new_key = bytes(range(32)), bytes(range(1, 33))
    old_file, other_file = tmp_path / "old.key", tmp_path / "older.key"
    old_file.write_text(old_key.hex() + "\n")
    other_file.write_text(bytes(16).hex())
    stored_before = Fingerprinter(old_key)("ghp_secret")
    previous = load_previous_keys([old_file, other_file])
    assert [key.key for key in previous] == [old_key, bytes(16)]
    assert previous[0]("ghp_secret") == stored_before
    assert Fingerprinter(new_key)("ghp_secret").split(":")[1] != stored_before.split(":")[1]


def test_a_bad_previous_key_is_an_error_naming_its_file(tmp_path: Path) -> None:
    with pytest.raises(FingerprintKeyError, match=r"missing\.key"):
        load_previous_keys([tmp_path / "missing.key"])


def test_github_hashed_token_is_what_githubs_audit_log_keeps() -> None:
    # GitHub's documentation: echo -n TOKEN | openssl dgst -sha256 -binary | base64 (the value
    # below is what that prints for this made-up token).
    token = "ghp_FakeClassicTokenForTokenotelTests0000"
    assert github_hashed_token(token) == "9eGCnSLh7SLfgAygUnAUGOLNWLa0PLmaXhE1InCkE8E="
