"""Which listeners may start: one on an address other hosts can reach needs TLS or
authentication, unless the user lets it listen in plaintext explicitly (insecure_listen)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

from tokenotel.errors import ConfigError

log = logging.getLogger(__name__)


def check_exposure(
    listeners: Iterable[tuple[str, str]], *, tls: bool, auth: bool, insecure_listen: bool
) -> None:
    """``listeners`` are (setting, address) of listeners that serve without protection of
    their own. Raises ConfigError when one of them is on a non-loopback address with neither
    TLS nor ``auth``; with ``insecure_listen`` it warns instead."""
    if tls or auth:
        return
    exposed = [(name, address) for name, address in listeners if not is_loopback(_host(address))]
    if not exposed:
        return
    which = ", ".join(f"{name} {address}" for name, address in exposed)
    if not insecure_listen:
        raise ConfigError(
            f"{which} can be reached from other hosts, and with neither TLS nor authentication "
            "anyone there could send or read token events: set tls_cert_file and tls_key_file "
            "(or auth), or --insecure-listen (insecure_listen) to listen in plaintext anyway"
        )
    log.warning(
        "insecure_listen: %s listen in plaintext without authentication; anyone who can reach "
        "them can send or read token events",
        which,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or a name: every address it resolves to) is loopback."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return bool(addresses) and all(_loopback(address) for address in addresses)


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _host(address: str) -> str:
    """The host of ``host:port`` or ``[v6]:port``."""
    return address.rpartition(":")[0].strip("[]")
