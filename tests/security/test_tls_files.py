"""The TLS settings and files: what goes together, files that cannot be used (each refused with
one sentence naming the fix), and a replaced certificate taken without a restart, in the
process (tests/security/test_tls.py checks the same through real clients)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from certs import Pki, make_pki
from tokenotel.config import load_settings
from tokenotel.errors import ConfigError
from tokenotel.security.tls import ServerTls, ServerTlsFiles, channel_credentials


@pytest.fixture(autouse=True)
def no_tokenotel_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("TOKENOTEL_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_settings_name_readable_files(pki: Pki) -> None:
    cert, key = pki.server
    settings = load_settings(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=pki.ca)
    assert (settings.tls_cert_file, settings.tls_key_file) == (cert, key)
    assert settings.tls_client_ca_file == pki.ca


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"tls_cert_file": "server"},
            "tls_cert_file and tls_key_file go together: set both",
        ),
        (
            {"tls_key_file": "server-key"},
            "tls_cert_file and tls_key_file go together: set both",
        ),
        (
            {"tls_client_ca_file": "ca"},
            "tls_client_ca_file needs tls_cert_file and tls_key_file",
        ),
        (
            {"server_ca_file": "ca", "client_cert_file": "client"},
            "client_cert_file and client_key_file go together",
        ),
        (
            {"client_cert_file": "client", "client_key_file": "client-key"},
            "client_cert_file needs server_ca_file",
        ),
    ],
)
def test_tls_settings_that_do_not_go_together_are_refused(
    pki: Pki, settings: dict[str, str], message: str
) -> None:
    files = {
        "server": pki.server[0],
        "server-key": pki.server[1],
        "ca": pki.ca,
        "client": pki.client[0],
        "client-key": pki.client[1],
    }
    with pytest.raises(ConfigError, match=message):
        load_settings(**{name: files[value] for name, value in settings.items()})


@pytest.mark.parametrize(
    "setting",
    ["tls_cert_file", "tls_key_file", "tls_client_ca_file", "server_ca_file", "client_key_file"],
)
def test_a_tls_file_that_does_not_exist_is_named(pki: Pki, tmp_path: Path, setting: str) -> None:
    given = {
        "tls_cert_file": pki.server[0],
        "tls_key_file": pki.server[1],
        "server_ca_file": pki.ca,
        "client_cert_file": pki.client[0],
        "client_key_file": pki.client[1],
    }
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as refused:
        load_settings(**(given | {setting: missing}))
    assert str(refused.value) == (
        f"invalid setting {setting} (TOKENOTEL_{setting.upper()}): {missing} is not a file: "
        "give the path of an existing file"
    )


def _files(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ServerTlsFiles:
    return ServerTlsFiles(cert or pki.server[0], key or pki.server[1])


def test_a_key_of_another_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ConfigError) as refused:
        ServerTls(_files(pki, key=pki.client[1]))
    message = str(refused.value)
    assert message.startswith(f"tls_cert_file {pki.server[0]} and tls_key_file {pki.client[1]}")
    assert message.endswith("give a PEM certificate (chain) and its unencrypted private key")
    assert "KEY_VALUES_MISMATCH" in message


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
    pki: Pki, tmp_path: Path
) -> None:
    key = load_pem_private_key(pki.server[1].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError, match=r"\(the key is encrypted\)"):
        ServerTls(_files(pki, key=encrypted))


def test_a_client_ca_file_without_a_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    files = ServerTlsFiles(*pki.server, client_ca_file=not_pem)
    with pytest.raises(ConfigError, match=f"tls_client_ca_file {not_pem} cannot be used"):
        ServerTls(files)
    with pytest.raises(ConfigError, match=f"server_ca_file {not_pem} holds no PEM certificate"):
        channel_credentials(not_pem)


def test_replaced_files_are_taken_by_the_next_connection_and_a_broken_pair_is_not(
    pki: Pki, tmp_path: Path
) -> None:
    first, second = pki.authority.server(), pki.authority.server()
    cert, key = first.write(tmp_path, "live")
    tls = ServerTls(ServerTlsFiles(cert, key))
    assert tls.fingerprint == first.certificate.fingerprint(hashes.SHA256()).hex()

    second.write(tmp_path, "live")
    assert tls.fingerprint == second.certificate.fingerprint(hashes.SHA256()).hex()

    cert.write_bytes(first.cert_pem)  # the old certificate with the new key: refused, kept
    assert tls.fingerprint == second.certificate.fingerprint(hashes.SHA256()).hex()
    key.write_bytes(first.key_pem)  # now the pair matches again
    assert tls.fingerprint == first.certificate.fingerprint(hashes.SHA256()).hex()


def test_the_key_is_in_no_repr(pki: Pki) -> None:
    tls = ServerTls(_files(pki))
    key = pki.server[1].read_text()
    assert key not in repr(tls) and key not in repr(vars(tls))
