"""Where a destination may point (SSRF): public http(s) addresses, or what ``CDP_DESTINATIONS_ALLOWLIST`` lists.

The check runs when a destination is saved and again before every delivery, on the addresses the
name resolves to then, and the delivery connects to the address it checked: a DNS answer that
changes in between (rebinding) cannot reach the inside.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from cdp.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = {"http": 80, "https": 443}


class RefusedAddress(InvalidInput):
    code = "refused_address"


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, value: str) -> Allowlist:
        """Comma-separated host names, addresses and CIDRs (the setting is validated in ``cdp.config``)."""
        hosts, networks = set(), []
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host in self.hosts or any(address in network for network in self.networks)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lowercased, without a trailing dot
    port: int
    address: str  # the checked address to connect to


def check_url(url: str, allowlist: Allowlist) -> Target:
    """The URL's target, resolved and checked now, or ``RefusedAddress`` saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise RefusedAddress(f"destination url must be http or https, got {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise RefusedAddress("destination url has no host")
    if parts.username or parts.password:
        raise RefusedAddress("destination url must not carry credentials; use the secret or write_key")
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise RefusedAddress("destination url has an invalid port") from None
    addresses = _resolve(host, port)
    for address in addresses:
        if not _public(address) and not allowlist.allows(host, address):
            raise RefusedAddress(
                f"destination host {host!r} resolves to {address}, a loopback, private, link-local, reserved or "
                "multicast address; list it in CDP_DESTINATIONS_ALLOWLIST to allow it")
    return Target(parts.scheme, host, port, str(addresses[0]))


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedAddress(f"destination host {host!r} does not resolve") from None
    addresses = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])  # drop an IPv6 zone
        if address not in addresses:
            addresses.append(address)
    return addresses


def _public(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    # is_global is False for private, loopback, link-local, shared, reserved and unspecified ranges.
    return address.is_global and not address.is_multicast
