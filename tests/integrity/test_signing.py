"""Checkpoints are C2SP signed notes with Ed25519: the key id, the note and the key files are the
specification's (and Go's sumdb/note encodings), so other tools can check them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tokenotel.errors import SigningKeyError
from tokenotel.integrity.signing import (
    Note,
    SigningKey,
    VerifierKey,
    key_id,
    load_signing_key,
    public_path,
)

#: The example of the signed-note reference implementation (golang.org/x/mod/sumdb/note): a
#: key, a text, and the note it signs (Ed25519 signatures are deterministic).
GO_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _key(tmp_path: Path, text: str = GO_KEY) -> SigningKey:
    path = tmp_path / "given.key"
    path.write_text(text + "\n")
    return load_signing_key(path, "unused", create=False)


def test_a_note_signed_here_is_the_reference_implementations(tmp_path: Path) -> None:
    key = _key(tmp_path)
    assert key.sign(GO_TEXT) == GO_NOTE
    assert key.verifier.id.hex() == "c74f20a3"
    assert key_id("PeterNeumann", key.verifier.public_key).hex() == "c74f20a3"
    note = Note.parse(GO_NOTE)
    assert note.text == GO_TEXT
    assert note.signed_by([key.verifier]) == key.verifier


def test_a_changed_text_or_another_key_is_not_trusted(tmp_path: Path) -> None:
    key = _key(tmp_path)
    other = load_signing_key(tmp_path / "other.key", "PeterNeumann")  # same name, new key
    changed = Note.parse(GO_NOTE.replace("don't", "do"))
    assert changed.signed_by([key.verifier]) is None
    assert Note.parse(GO_NOTE).signed_by([other.verifier]) is None  # unknown keys are ignored
    assert Note.parse(other.sign(GO_TEXT)).signed_by([key.verifier]) is None


def test_malformed_notes_are_refused() -> None:
    for bad in (
        GO_TEXT,  # no signature
        GO_TEXT + "\n- PeterNeumann AAAA\n",  # a hyphen, not an em dash
        GO_TEXT + "\n— PeterNeumann not-base64!\n",
        GO_TEXT.replace("\n", "\r\n") + "\n— PeterNeumann AAAAAAA=\n",  # a control character
    ):
        with pytest.raises(ValueError):
            Note.parse(bad)


def test_a_new_key_is_private_and_its_public_key_is_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key = load_signing_key(path, "host.example/tokenotel/db")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+host.example/tokenotel/db+")
    assert VerifierKey.parse(public_path(path).read_text()) == key.verifier
    assert load_signing_key(path, "ignored").verifier == key.verifier  # read back, not replaced
    # PRIVATE+KEY+<name>+<id>+<base64 key>: the key's base64 may hold "+" itself.
    secret = path.read_text().strip().split("+", 4)[4]
    assert len(secret) == 44  # base64 of 0x01 and the 32-byte seed
    assert secret not in repr(key) and secret not in str(key.verifier)
    assert repr(key) == f"SigningKey(host.example/tokenotel/db+{key.verifier.id.hex()})"


def test_a_damaged_key_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="not an Ed25519 signing key"):
        _key(tmp_path, "PRIVATE+KEY+name+00000000+AAAA")
    with pytest.raises(SigningKeyError, match=r"key id .* does not match"):
        _key(tmp_path, GO_KEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(SigningKeyError, match="start `tokenotel serve` once"):
        load_signing_key(tmp_path / "absent.key", "x", create=False)


def test_a_verifier_key_must_match_its_id() -> None:
    good = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    assert str(VerifierKey.parse(good)) == good
    with pytest.raises(ValueError, match="does not match"):
        VerifierKey.parse(good.replace("c74f20a3", "00000000"))
