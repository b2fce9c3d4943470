"""Certificates for the TLS tests, made with the ``cryptography`` package: certificate
authorities, the certificates they sign (a server's for 127.0.0.1 and localhost, a client's),
PEM files of them, and a client's TLS context that trusts one."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names a server certificate is issued for: what the tests connect to.
SERVER_NAMES = ("127.0.0.1", "localhost")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """``name.crt`` and ``name.key`` in ``directory`` (the key mode 0600); their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)
        return cert, key


class Authority:
    """A certificate authority that signs server and client certificates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path) -> Path:
        """The CA certificate as ``<name>.crt`` in ``directory``; its path."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.crt"
        path.write_bytes(self.cert_pem)
        return path

    def server(self, *names: str, expired: bool = False) -> Issued:
        """A server certificate for ``names`` (IP addresses or DNS names; default: 127.0.0.1 and
        localhost), valid now, or expired yesterday."""
        alternatives: list[x509.GeneralName] = []
        for name in names or SERVER_NAMES:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        return self._issue(
            (names or SERVER_NAMES)[0], alternatives, ExtendedKeyUsageOID.SERVER_AUTH, expired
        )

    def client(self, name: str = "collector", *, expired: bool = False) -> Issued:
        """A client certificate for ``name``."""
        return self._issue(name, [], ExtendedKeyUsageOID.CLIENT_AUTH, expired)

    def _issue(
        self,
        common_name: str,
        alternatives: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        expired: bool,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (now - 30 * DAY, now - DAY) if expired else (now - HOUR, now + 7 * DAY)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alternatives:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternatives), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@dataclass(frozen=True)
class Pki:
    """The files of the TLS tests: a CA and another one (the wrong CA), and (certificate, key)
    pairs: the server's for 127.0.0.1 and localhost, an expired one, clients' (valid, expired,
    and one the wrong CA signed)."""

    directory: Path
    authority: Authority
    ca: Path
    wrong_ca: Path
    server: tuple[Path, Path]
    expired_server: tuple[Path, Path]
    client: tuple[Path, Path]
    expired_client: tuple[Path, Path]
    stranger: tuple[Path, Path]

    def context(
        self, ca: Path | None = None, client: tuple[Path, Path] | None = None
    ) -> ssl.SSLContext:
        """A client's TLS: trusting ``ca`` (default: the right CA), presenting ``client``."""
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        if client is not None:
            context.load_cert_chain(*client)
        return context


def make_pki(directory: Path) -> Pki:
    authority, wrong = Authority("ca"), Authority("wrong-ca")
    return Pki(
        directory=directory,
        authority=authority,
        ca=authority.write(directory),
        wrong_ca=wrong.write(directory),
        server=authority.server().write(directory, "server"),
        expired_server=authority.server(expired=True).write(directory, "expired-server"),
        client=authority.client().write(directory, "client"),
        expired_client=authority.client(expired=True).write(directory, "expired-client"),
        stranger=wrong.client("stranger").write(directory, "stranger"),
    )
