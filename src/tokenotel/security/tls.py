"""TLS from certificate files: the listeners' (TLS 1.2 or later, mutual TLS with a client CA,
the files read again when they change, without a restart) and the reading commands' channel.

Every listener asks for the current certificate as a connection arrives: gRPC calls the
certificate configuration fetcher of ``grpc.dynamic_ssl_server_credentials`` before each
handshake, and the aiohttp listeners' SSLContext wraps each connection with the context loaded
from the files' current contents. So a replaced certificate is served from the next connection
on, whether or not the client sends a server name (SNI); connections already open keep theirs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc

from tokenotel.errors import ConfigError

log = logging.getLogger(__name__)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

#: What identifies a file's contents without reading it: a replaced or rewritten file changes it.
Stamp = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class ServerTlsFiles:
    """Where the listeners' certificate (chain), its key and, for mutual TLS, the CA
    certificates of accepted clients are."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + (
            (self.client_ca_file,) if self.client_ca_file is not None else ()
        )


@dataclass(frozen=True)
class _Loaded:
    """The files' contents at one moment, as both TLS stacks take them."""

    stamp: Stamp
    context: ssl.SSLContext = field(repr=False)
    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)  # never in a repr or a log
    client_ca_pem: bytes | None = field(repr=False)
    fingerprint: str  # SHA-256 of the certificate served, as hex

    def grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key_pem, self.chain_pem)], root_certificates=self.client_ca_pem
        )


class ServerTls:
    """The listeners' TLS: loaded once at start (a file that cannot be used stops the start),
    then again whenever a file's modification time, size or inode changed. A replacement
    that cannot be used (a half-written file, a key that does not match) is logged and the
    certificate loaded before is kept, until the files change again."""

    def __init__(self, files: ServerTlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()  # gRPC asks from its own threads
        loaded = self._load(self._stamp())
        if loaded is None:
            raise ConfigError(
                f"the TLS files {', '.join(map(str, files.paths))} changed while they were "
                "read: start again once they are written"
            )
        self._loaded = loaded
        self._failed: Stamp | None = None
        log.info(
            "TLS: certificate %s (SHA-256 %s)%s",
            files.cert_file,
            loaded.fingerprint,
            f", client certificates signed by {files.client_ca_file}"
            if files.client_ca_file
            else "",
        )

    @property
    def mutual(self) -> bool:
        return self.files.client_ca_file is not None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate served now (hex)."""
        return self._current().fingerprint

    def ssl_context(self) -> ssl.SSLContext:
        """For an asyncio (aiohttp) server: each new connection gets the current files."""
        return _ReloadingContext(self)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """For a gRPC server: before each handshake, the current files when they changed."""
        first = self._current()
        served = [first.stamp]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            loaded = self._current()
            if loaded.stamp == served[0]:
                return None  # gRPC keeps what it has
            served[0] = loaded.stamp
            return loaded.grpc_configuration()

        return grpc.dynamic_ssl_server_credentials(
            first.grpc_configuration(),
            fetch,  # type: ignore[arg-type]  # the stubs leave out None: "no change", as documented
            require_client_authentication=self.mutual,
        )

    def _current(self) -> _Loaded:
        stamp = self._stamp()
        with self._lock:
            if stamp in (self._loaded.stamp, self._failed):
                return self._loaded
            try:
                loaded = self._load(stamp)
            except ConfigError as e:
                self._failed = stamp
                log.warning("TLS files changed but %s; still serving the certificate before", e)
                return self._loaded
            if loaded is not None:  # else: changing as we read; the next connection tries again
                self._loaded = loaded
                log.info(
                    "TLS: %s changed, now serving the certificate with SHA-256 %s",
                    ", ".join(map(str, self.files.paths)),
                    loaded.fingerprint,
                )
            return self._loaded

    def _stamp(self) -> Stamp:
        stamps = []
        for path in self.files.paths:
            try:
                s = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0, 0))  # gone for a moment while it is replaced
            else:
                stamps.append((s.st_mtime_ns, s.st_ctime_ns, s.st_size, s.st_ino))
        return tuple(stamps)

    def _load(self, stamp: Stamp) -> _Loaded | None:
        """The files as they are, checked by OpenSSL; None if they changed while being read
        (then what was read may not belong together)."""
        files = self.files
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = MINIMUM_VERSION
        try:
            context.load_cert_chain(files.cert_file, files.key_file, password=_no_password)
        except (OSError, ssl.SSLError, _EncryptedKey) as e:
            raise ConfigError(
                f"tls_cert_file {files.cert_file} and tls_key_file {files.key_file} cannot be "
                f"used ({_reason(e)}): give a PEM certificate (chain) and its unencrypted "
                "private key"
            ) from None
        client_ca_pem = None
        if files.client_ca_file is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            try:
                context.load_verify_locations(cafile=files.client_ca_file)
                client_ca_pem = files.client_ca_file.read_bytes()
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(
                    f"tls_client_ca_file {files.client_ca_file} cannot be used ({_reason(e)}): "
                    "give the PEM certificates of the CAs that sign client certificates"
                ) from None
        try:
            chain_pem, key_pem = files.cert_file.read_bytes(), files.key_file.read_bytes()
        except OSError:
            return None
        if self._stamp() != stamp:
            return None
        return _Loaded(stamp, context, chain_pem, key_pem, client_ca_pem, _fingerprint(chain_pem))


class _ReloadingContext(ssl.SSLContext):
    """An SSLContext that wraps each new connection with the context of the files' current
    contents (asyncio wraps every connection with ``wrap_bio``)."""

    _tls: ServerTls

    def __new__(cls, tls: ServerTls) -> _ReloadingContext:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        context._tls = tls
        return context

    def __init__(self, tls: ServerTls) -> None:
        pass  # all in __new__: SSLContext is built there

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self._tls._current().context.wrap_bio(
            incoming, outgoing, server_side, server_hostname, session
        )

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._tls._current().context.wrap_socket(*args, **kwargs)


def channel_credentials(
    server_ca_file: Path, client_cert_file: Path | None = None, client_key_file: Path | None = None
) -> grpc.ChannelCredentials:
    """A gRPC client's TLS: trusting only the CA certificates of ``server_ca_file`` (as
    grpcurl's -cacert and the collector's ``tls: ca_file`` do), presenting a client certificate
    when given (mutual TLS)."""
    try:
        root = server_ca_file.read_bytes()
        key = client_key_file.read_bytes() if client_key_file is not None else None
        chain = client_cert_file.read_bytes() if client_cert_file is not None else None
    except OSError as e:
        raise ConfigError(f"cannot read {e.filename} ({e.strerror}): fix the path") from None
    if not _PEM_CERTIFICATE.search(root):
        raise ConfigError(
            f"server_ca_file {server_ca_file} holds no PEM certificate: give the CA "
            "certificate that signed the server's certificate"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )


class _EncryptedKey(Exception):
    pass


def _no_password() -> NoReturn:
    """Instead of OpenSSL asking for a passphrase on the terminal."""
    raise _EncryptedKey("the key is encrypted")


def _reason(error: Exception) -> str:
    """OpenSSL's words, without where in CPython they were raised; or the system's."""
    if isinstance(error, ssl.SSLError):
        return re.sub(r" \(_ssl\.c:\d+\)$", "", str(error))
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def _fingerprint(chain_pem: bytes) -> str:
    first = _PEM_CERTIFICATE.search(chain_pem)
    if first is None:
        return "unknown"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first.group().decode("ascii"))).hexdigest()
