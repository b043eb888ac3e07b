"""Where a worker may connect when a caller names a URL: the destination policy of fetches (against server-side
request forgery).

A worker fetches what a caller names from inside the deployment, where loopback, the pod and node networks, cloud
metadata (169.254.169.254, fd00:ec2::254) and in-cluster services answer. So by default a fetch connects to public
addresses only: an address is allowed when `ipaddress` calls it global and it is not multicast, and an IPv6 address
that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`) is judged by that
IPv4 address; IPv4-compatible `::a.b.c.d` (deprecated) is never allowed. That refuses loopback, RFC 1918 and IPv6
ULA (fc00::/7), link-local (169.254/16, fe80::/10), CGNAT (100.64/10), multicast, unspecified, documentation,
benchmarking and reserved ranges, in every spelling that resolves to them (`2130706433`, `0x7f.1`, `[::1]`,
`[::ffff:127.0.0.1]`). A deployment opens more with networks (CIDRs) and host names (`*.example.com`: its
subdomains) it allow-lists.

`resolve` is the check at connect time: it resolves a host once and checks every address it got (one refused
address refuses the host); the caller connects to exactly those addresses and never resolves again, so a name
that answers differently the second time (DNS rebinding) cannot move the connection to an unchecked address.
Everything else here is pure: no resolution, no connection.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from vidstrata.media.video import BadVideo

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible (RFC 4291, deprecated), plus :: and ::1
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")

# The one reason of every refusal: it names neither the address a host resolved to nor why that address was
# refused, so a caller learns nothing about what exists or listens inside the deployment.
REFUSED = ("refused: this deployment fetches from public addresses only (loopback, private, link-local and other "
           "internal ones need VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS or _ALLOW_HOSTS)")


class DestinationRefused(BadVideo):
    """The policy refuses this destination: permanent, and nothing was sent to it."""


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, IPv4-compatible, 6to4, NAT64), else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _COMPATIBLE or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def is_public(address: Address) -> bool:
    """Whether the default policy lets a fetch connect to `address` (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # a zone only means something on a local link
        if address in _COMPATIBLE:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
    return address.is_global and not address.is_multicast


def parse_address(text: str) -> Address:
    """An address as getaddrinfo writes it (an IPv6 one may carry `%zone`)."""
    return ipaddress.ip_address(text)


def parse_networks(values: Iterable[str | Network]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; host bits set are an error, so a typo cannot open more than meant."""
    return tuple(v if isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else ipaddress.ip_network(v.strip())
                 for v in values)


def normalize_host(name: str) -> str:
    """A host name as the policy compares it: lower case, without a trailing dot or IPv6 brackets."""
    return name.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def check_host_pattern(name: str) -> str:
    """An allow-listed host name, normalised; ValueError when it is not a host name or `*.domain`."""
    host = normalize_host(name)
    if not _HOST_PATTERN.match(host):
        raise ValueError(f"{name!r} is not a host name (or *.domain for its subdomains)")
    return host


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses a fetch may connect to: public ones, those in `allow_networks`, and whatever `allow_hosts`
    resolve to."""

    allow_networks: tuple[Network, ...] = ()
    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, networks: Iterable[str | Network] = (), hosts: Iterable[str] = ()) -> DestinationPolicy:
        return cls(parse_networks(networks), frozenset(check_host_pattern(h) for h in hosts))

    def host_allowed(self, host: str) -> bool:
        """Whether `host` is allow-listed by name (exactly, or as a subdomain of a `*.domain` entry)."""
        host = normalize_host(host)
        if host in self.allow_hosts:
            return True
        return any(p.startswith("*.") and host.endswith(p[1:]) for p in self.allow_hosts)

    def allows(self, address: Address) -> bool:
        """Whether a fetch may connect to `address` whatever its name: public, or inside an allow-listed network."""
        unzoned = ipaddress.ip_address(str(address).split("%", 1)[0])
        inner = embedded_ipv4(unzoned)
        if any(a in n for n in self.allow_networks for a in (unzoned, inner) if a is not None):
            return True
        return is_public(address)

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """(family, sockaddr) of every address `host` resolves to, each checked; connect to these and nothing else.

        Raises DestinationRefused when any address is refused (nothing is sent anywhere then), and socket.gaierror
        as getaddrinfo does when the host cannot be resolved.
        """
        named = self.host_allowed(host)
        name = normalize_host(host)
        if not named and (name == "localhost" or name.endswith(".localhost")):
            raise DestinationRefused(REFUSED)  # loopback by definition (RFC 6761), whatever a resolver says
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[tuple[int, tuple]] = []
        for family, _, _, _, sockaddr in found:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise DestinationRefused(REFUSED)
            if not named and not self.allows(parse_address(sockaddr[0])):
                raise DestinationRefused(REFUSED)
            if (family, sockaddr) not in addresses:
                addresses.append((family, sockaddr))
        if not addresses:
            raise DestinationRefused(REFUSED)
        return addresses
