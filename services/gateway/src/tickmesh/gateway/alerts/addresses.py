"""Which IP addresses a webhook may be sent to: public ones, in whatever form they are written.

Any trader can name a webhook URL, so without this the gateway would post to services only
its own network can reach (cloud metadata, the database, the mesh). `is_global` alone is
not enough: IPv6 has forms that carry an IPv4 address inside (NAT64, 6to4, Teredo,
IPv4-compatible, IPv4-mapped), and a translator or a dual-stack socket turns them back into
that IPv4 address, internal or not.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

# Translated to IPv4 by a NAT64 gateway (RFC 6052 well-known prefix, RFC 8215 local use):
# the IPv4 inside may be anything, and the translator's network decides where it lands.
NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))
# The deprecated IPv4-compatible form ::a.b.c.d (RFC 4291 2.5.5.1); also holds :: and ::1.
IPV4_COMPATIBLE = IPv6Network("::/96")


def parse_address(text: str) -> IPAddress | None:
    """The address written in `text` (brackets allowed), or None when it is a name."""
    try:
        return ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def refusal(address: IPAddress) -> str | None:
    """Why a webhook must not be sent to `address`, or None when it is public."""
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            return f"{address} is a scoped (link-local) address"
        if any(address in network for network in NAT64):
            return f"{address} is a NAT64 address (it reaches an IPv4 address via a translator)"
        if address.sixtofour is not None:
            return f"{address} is a 6to4 address (it embeds {address.sixtofour})"
        if address.teredo is not None:
            return f"{address} is a Teredo address"
        if address in IPV4_COMPATIBLE:
            return f"{address} is an IPv4-compatible address (deprecated; it embeds an IPv4 one)"
        if address.ipv4_mapped is not None:
            inner = refusal(address.ipv4_mapped)
            return None if inner is None else f"{address} maps to IPv4: {inner}"
        if address.is_site_local:
            return f"{address} is a site-local address"
    if (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    ):
        return f"{address} is not a public address"
    return None


def connect_form(address: IPAddress) -> IPAddress:
    """The address to dial: an IPv4-mapped address as the IPv4 address it stands for."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
