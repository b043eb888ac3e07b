"""The destination policy of fetches as a pure function: what it decides for an address, without connecting anywhere.

Nothing here opens a socket: addresses off loopback (cloud metadata, private networks) are only ever judged. The
property tests hold the policy to `ipaddress`: an address is allowed only when ipaddress calls it global, or when
the deployment allow-listed its network.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vidstrata.workers.destinations import REFUSED, DestinationPolicy, DestinationRefused, embedded_ipv4, is_public
from vidstrata.workers.fetch import SourcePolicy
from vidstrata.workers.settings import WorkerSettings

DEFAULT = DestinationPolicy()

REFUSED_ADDRESSES = [
    "169.254.169.254",  # cloud metadata (AWS, GCP, Azure, ...)
    "169.254.170.2",  # ECS task metadata
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1", "fe80::a9fe:a9fe",  # IPv6 link-local
    "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",  # RFC 1918
    "fc00::1", "fd12:3456::1",  # IPv6 ULA
    "100.64.0.1", "100.127.255.254",  # CGNAT
    "127.0.0.1", "127.255.255.254", "::1",  # loopback
    "0.0.0.0", "0.1.2.3", "::",  # unspecified / "this network"
    "224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",  # multicast
    "255.255.255.255", "240.0.0.1", "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
    "2001:db8::1", "2001::1", "100::1",  # documentation, Teredo, discard-only
    # IPv4 inside IPv6: mapped, compatible, 6to4 and NAT64 forms of internal addresses.
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:100.64.0.1", "::ffff:224.0.0.1",
    "::127.0.0.1", "::169.254.169.254", "::8.8.8.8",
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",
]
PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "151.101.1.140", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
                    "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_internal_addresses_are_refused(address):
    assert not DEFAULT.allows(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address):
    assert DEFAULT.allows(ipaddress.ip_address(address))


def test_a_zone_is_never_public():
    assert not DEFAULT.allows(ipaddress.ip_address("fe80::1%eth0"))
    assert not is_public(ipaddress.ip_address("2606:4700:4700::1111%eth0"))


def test_allow_listed_networks_open_exactly_themselves():
    policy = DestinationPolicy.of(["10.20.0.0/16", "fd00:1::/64", "169.254.169.254"])
    for address in ("10.20.3.4", "::ffff:10.20.3.4", "fd00:1::5", "169.254.169.254"):
        assert policy.allows(ipaddress.ip_address(address)), address
    for address in ("10.21.0.1", "10.0.0.1", "fd00:2::5", "169.254.169.253", "127.0.0.1"):
        assert not policy.allows(ipaddress.ip_address(address)), address
    with pytest.raises(ValueError, match="host bits set"):
        DestinationPolicy.of(["10.20.0.1/16"])  # a typo must not open more than meant


def test_embedded_ipv4():
    assert embedded_ipv4(ipaddress.ip_address("::ffff:169.254.169.254")) == ipaddress.ip_address("169.254.169.254")
    assert embedded_ipv4(ipaddress.ip_address("2002:a9fe:a9fe::")) == ipaddress.ip_address("169.254.169.254")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address("169.254.169.254")
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("8.8.8.8")) is None


def _resolver(*addresses: str):
    """A getaddrinfo that answers `addresses` for any name: nothing is looked up, nothing connected to."""
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in addresses]
    return getaddrinfo


def test_resolve_checks_every_address_a_name_has(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("8.8.8.8", "2606:4700:4700::1111"))
    assert [sockaddr[0] for _, sockaddr in DEFAULT.resolve("videos.example", 443)] == ["8.8.8.8", "2606:4700:4700::1111"]
    # One internal address among public ones refuses the name: a resolver cannot slip one in.
    for internal in ("169.254.169.254", "10.1.2.3", "::ffff:127.0.0.1", "fd00:ec2::254"):
        monkeypatch.setattr(socket, "getaddrinfo", _resolver("8.8.8.8", internal))
        with pytest.raises(DestinationRefused) as raised:
            DEFAULT.resolve("videos.example", 443)
        assert str(raised.value) == REFUSED  # never names the address it resolved to


def test_allow_listed_hosts_open_what_they_resolve_to(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver("10.96.0.12"))
    policy = DestinationPolicy.of(hosts=["minio.storage.svc.cluster.local", "*.internal.example"])
    assert policy.resolve("MINIO.storage.svc.cluster.local.", 9000)
    assert policy.resolve("videos.internal.example", 443)
    for name in ("internal.example", "evil-internal.example", "minio.storage.svc.cluster.local.evil.example"):
        with pytest.raises(DestinationRefused):
            policy.resolve(name, 443)
    with pytest.raises(DestinationRefused):  # localhost names are loopback whatever a resolver says (RFC 6761)
        DestinationPolicy().resolve("app.localhost", 80)


# -- the property: allowed only when ipaddress says global, or allow-listed ------------------------------------

SPECIAL = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/4",
    "0.0.0.0/8", "240.0.0.0/4", "::/96", "::ffff:0:0/96", "2002::/16", "64:ff9b::/96", "fc00::/7", "fe80::/10",
    "ff00::/8", "2001::/32", "2001:db8::/32",
)]
addresses = st.one_of(
    st.ip_addresses(),
    st.sampled_from(SPECIAL).flatmap(lambda network: st.ip_addresses(network=network)),
)


@settings(max_examples=2000, deadline=None)
@given(addresses)
def test_allowed_only_when_ipaddress_says_global(address):
    if DEFAULT.allows(address):
        assert address.is_global and not address.is_multicast, address
        inner = embedded_ipv4(address)
        assert inner is None or inner.is_global, address
    if isinstance(address, ipaddress.IPv4Address):  # for IPv4 the rule is exactly ipaddress's
        assert DEFAULT.allows(address) == (address.is_global and not address.is_multicast)


@settings(max_examples=500, deadline=None)
@given(addresses, st.sampled_from(SPECIAL))
def test_an_allow_listed_network_opens_its_addresses_and_no_other(address, network):
    policy = DestinationPolicy.of([network])
    inner = embedded_ipv4(address)
    listed = address in network or (inner is not None and inner in network)
    assert policy.allows(address) == (listed or DEFAULT.allows(address))


# -- settings: plain values from the environment ------------------------------------------------------------------


def test_policy_settings_take_plain_values(monkeypatch):
    monkeypatch.setenv("VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS", "127.0.0.2/32")
    monkeypatch.setenv("VIDSTRATA_WORKER_FETCH_ALLOW_HOSTS", "minio.storage.svc.cluster.local")
    monkeypatch.setenv("VIDSTRATA_WORKER_LOCAL_ROOTS", "/srv/videos")
    settings = WorkerSettings()
    assert settings.fetch_allow_networks == [ipaddress.ip_network("127.0.0.2/32")]
    assert settings.fetch_allow_hosts == ["minio.storage.svc.cluster.local"]
    assert [str(p) for p in settings.local_roots] == ["/srv/videos"]
    monkeypatch.setenv("VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS", "10.0.0.0/8, fd00:1::/64")
    monkeypatch.setenv("VIDSTRATA_WORKER_FETCH_ALLOW_HOSTS", "a.example,*.b.example")
    monkeypatch.setenv("VIDSTRATA_WORKER_LOCAL_ROOTS", "/srv/videos:/data/samples")
    settings = WorkerSettings()
    assert [str(n) for n in settings.fetch_allow_networks] == ["10.0.0.0/8", "fd00:1::/64"]
    assert settings.fetch_allow_hosts == ["a.example", "*.b.example"]
    assert [str(p) for p in settings.local_roots] == ["/srv/videos", "/data/samples"]
    monkeypatch.setenv("VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS", '["10.0.0.0/8"]')  # JSON still reads
    assert [str(n) for n in WorkerSettings().fetch_allow_networks] == ["10.0.0.0/8"]


def test_policy_settings_default_to_closed(monkeypatch):
    for name in ("FETCH_ALLOW_NETWORKS", "FETCH_ALLOW_HOSTS", "LOCAL_ROOTS", "ALLOW_LOCAL_PATHS"):
        monkeypatch.delenv(f"VIDSTRATA_WORKER_{name}", raising=False)
    assert SourcePolicy.from_settings(WorkerSettings()) == SourcePolicy()
    monkeypatch.setenv("VIDSTRATA_WORKER_LOCAL_ROOTS", "/srv/videos")
    monkeypatch.setenv("VIDSTRATA_WORKER_ALLOW_LOCAL_PATHS", "false")
    assert SourcePolicy.from_settings(WorkerSettings()).local_roots == ()


@pytest.mark.parametrize(("name", "value"), [
    ("VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS", "10.0.0.1/8"),
    ("VIDSTRATA_WORKER_FETCH_ALLOW_NETWORKS", "not-a-network"),
    ("VIDSTRATA_WORKER_FETCH_ALLOW_HOSTS", "http://a.example"),
    ("VIDSTRATA_WORKER_FETCH_ALLOW_HOSTS", "a.example:9000"),
])
def test_policy_settings_reject_what_they_cannot_mean(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()
