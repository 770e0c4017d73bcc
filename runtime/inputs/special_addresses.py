"""The IANA special-purpose address registries, as data: which addresses a URL may not reach.

Sources: "IANA IPv4 Special-Purpose Address Registry" and "IANA IPv6 Special-Purpose Address
Registry" (iana-ipv4-special-registry, iana-ipv6-special-registry), with each entry's name and
its "Globally Reachable" column; plus the two allocation registries that bound the global space:
IPv4 multicast (224.0.0.0/4, "IPv4 Multicast Address Space Registry") and, for IPv6, the
"IPv6 Address Space" registry, where only 2000::/3 is Global Unicast (fec0::/10, the deprecated
site-local space, and every other block outside 2000::/3 are reserved or local).

The fetcher refuses an address when any entry below that covers it is not globally reachable:
192.0.0.9 (PCP anycast, reachable) sits inside 192.0.0.0/24 (IETF protocol assignments, not
reachable) and is refused with it. An update of the registries is an edit of these tables.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Block:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    globally_reachable: bool


def _blocks(rows: list[tuple[str, str, bool]]) -> tuple[Block, ...]:
    return tuple(Block(ipaddress.ip_network(prefix), name, reachable) for prefix, name, reachable in rows)


# (prefix, the registry's name, Globally Reachable) - "N/A" entries are listed as not reachable
# when they carry another address (6to4, Teredo: their embedded IPv4 address is checked as well).
IPV4_SPECIAL = _blocks(
    [
        ("0.0.0.0/8", '"This network"', False),
        ("0.0.0.0/32", '"This host on this network"', False),
        ("10.0.0.0/8", "Private-Use", False),
        ("100.64.0.0/10", "Shared Address Space", False),
        ("127.0.0.0/8", "Loopback", False),
        ("169.254.0.0/16", "Link Local", False),
        ("172.16.0.0/12", "Private-Use", False),
        ("192.0.0.0/24", "IETF Protocol Assignments", False),
        ("192.0.0.0/29", "IPv4 Service Continuity Prefix", False),
        ("192.0.0.8/32", "IPv4 dummy address", False),
        ("192.0.0.9/32", "Port Control Protocol Anycast", True),
        ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", True),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery", False),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery", False),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", False),
        ("192.31.196.0/24", "AS112-v4", True),
        ("192.52.193.0/24", "AMT", True),
        ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", False),
        ("192.168.0.0/16", "Private-Use", False),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", True),
        ("198.18.0.0/15", "Benchmarking", False),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", False),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", False),
        ("240.0.0.0/4", "Reserved", False),
        ("255.255.255.255/32", "Limited Broadcast", False),
        ("224.0.0.0/4", "Multicast (IPv4 Multicast Address Space Registry)", False),
    ]
)

IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")  # IPv6 Address Space registry: Global Unicast

IPV6_SPECIAL = _blocks(
    [
        ("::1/128", "Loopback Address", False),
        ("::/128", "Unspecified Address", False),
        ("::ffff:0:0/96", "IPv4-mapped Address", False),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", True),
        ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", False),
        ("100::/64", "Discard-Only Address Block", False),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", False),
        ("2001::/23", "IETF Protocol Assignments", False),
        ("2001::/32", "TEREDO", False),
        ("2001:1::1/128", "Port Control Protocol Anycast", True),
        ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", True),
        ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast Address", True),
        ("2001:2::/48", "Benchmarking", False),
        ("2001:3::/32", "AMT", True),
        ("2001:4:112::/48", "AS112-v6", True),
        ("2001:10::/28", "Deprecated (previously ORCHID)", False),
        ("2001:20::/28", "ORCHIDv2", True),
        ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", True),
        ("2001:db8::/32", "Documentation", False),
        ("2002::/16", "6to4", False),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", True),
        ("3fff::/20", "Documentation", False),
        ("5f00::/16", "Segment Routing (SRv6) SIDs", False),
        ("fc00::/7", "Unique-Local", False),
        ("fe80::/10", "Link-Local Unicast", False),
        ("fec0::/10", "Site-Local (deprecated; IPv6 Address Space registry)", False),
        ("ff00::/8", "Multicast (IPv6 Address Space registry)", False),
    ]
)


OUTSIDE_GLOBAL_UNICAST = Block(
    ipaddress.ip_network("::/0"), "outside Global Unicast 2000::/3 (IPv6 Address Space)", globally_reachable=False
)


def not_reachable_block(ip: IpAddress) -> Block | None:
    """The registry entry that makes ``ip`` not globally reachable, or None if no entry does."""
    covering = [block for block in (IPV4_SPECIAL if ip.version == 4 else IPV6_SPECIAL) if ip in block.network]
    refusing = [block for block in covering if not block.globally_reachable]
    if refusing:
        return max(refusing, key=lambda block: block.network.prefixlen)  # the most specific entry names it
    if ip.version == 6 and not covering and ip not in IPV6_GLOBAL_UNICAST:
        return OUTSIDE_GLOBAL_UNICAST
    return None
