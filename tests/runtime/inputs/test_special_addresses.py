"""The address policy comes from the IANA special-purpose registries; DNS counts against the deadline."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from runtime.errors import InvalidInput
from runtime.inputs.fetch import UrlFetcher, is_public, refusal_reason
from runtime.inputs.special_addresses import IPV4_SPECIAL, IPV6_SPECIAL
from runtime.settings import Settings

REFUSED = {
    "192.0.0.192": "IETF Protocol Assignments",  # a cloud metadata address (Oracle)
    "192.0.0.9": "IETF Protocol Assignments",  # reachable anycast inside a block that is not
    "192.88.99.1": "6to4 Relay Anycast",
    "100.100.100.200": "Shared Address Space",  # Alibaba Cloud's metadata address
    "198.18.0.1": "Benchmarking",
    "240.0.0.1": "Reserved",
    "255.255.255.255": "Limited Broadcast",
    "0.1.2.3": "This network",
    "224.0.0.1": "Multicast",
    "fec0::1": "Site-Local",
    "fd00:ec2::254": "Unique-Local",  # the EC2 metadata service over IPv6
    "3fff::1": "Documentation",
    "5f00::1": "Segment Routing",
    "100:0:0:1::1": "Dummy IPv6 Prefix",
    "64:ff9b:1::1": "IPv4-IPv6 Translat.",
    "2001:2::1": "Benchmarking",
    "4000::1": "outside Global Unicast",
    "::ffff:192.0.0.192": "IETF Protocol Assignments",  # embedded forms carry the IPv4 address
    "64:ff9b::c000:c0": "IETF Protocol Assignments",
    "2002:c000:00c0::1": "IETF Protocol Assignments",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "192.0.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1", "64:ff9b::808:808"]


@pytest.mark.parametrize("address, registry_name", REFUSED.items())
def test_every_address_that_is_not_globally_reachable_is_refused_with_its_registry_name(address, registry_name):
    ip = ipaddress.ip_address(address)
    assert not is_public(ip)
    assert registry_name in refusal_reason(ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert is_public(ipaddress.ip_address(address))


def test_the_registries_are_data_with_a_name_for_every_block():
    assert len(IPV4_SPECIAL) >= 25 and len(IPV6_SPECIAL) >= 25
    for block in IPV4_SPECIAL + IPV6_SPECIAL:
        assert block.name and block.network.prefixlen <= block.network.max_prefixlen
    # every block the registries mark not reachable is refused at its first and last address
    for block in IPV4_SPECIAL + IPV6_SPECIAL:
        if not block.globally_reachable:
            assert not is_public(block.network[0]) and not is_public(block.network[-1]), block


def test_a_slow_name_lookup_ends_at_the_fetch_deadline(monkeypatch):
    def slow_lookup(*args, **kwargs):
        time.sleep(3)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    fetcher = UrlFetcher(Settings(fetch_timeout_s=0.3))
    start = time.monotonic()
    with pytest.raises(InvalidInput) as refused:
        fetcher.fetch("http://slow-dns.example/cat.jpg", "url")
    assert refused.value.code == "url_timeout"
    assert "resolving" in refused.value.message
    assert time.monotonic() - start < 2.5  # did not wait for the 3 s lookup
