"""Who sent a webhook: the peer address, or the client a trusted proxy forwarded for.

Behind an ingress every request comes from the proxy; the sender is in `X-Forwarded-For`.
That header is only believed when the direct peer is one of `trusted` networks, and then
read from the right: each trusted hop appends the address it saw, so the first address
from the right that is not a trusted proxy is the sender (a client cannot forge the hops
that were added after it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError naming the bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket or proxy writes an IPv4 peer as ::ffff:a.b.c.d: it is that IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The sender's address: `peer`, or from `X-Forwarded-For` if `peer` is a trusted proxy."""
    address = _address(peer) if peer else None
    if address is None:
        return None

    def is_trusted(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(a in network for network in trusted)

    if not trusted or not is_trusted(address):
        return str(address)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        forwarded = _address(hop)
        if forwarded is None:
            # Garbage in the chain: nothing left of it can be believed; the proxy is the peer.
            return str(address)
        if not is_trusted(forwarded):
            return str(forwarded)
        address = forwarded
    return str(address)


def in_networks(address: str | None, allowed: Sequence[Network]) -> bool:
    """Whether `address` lies in one of `allowed` (False for no address)."""
    parsed = _address(address) if address else None
    return parsed is not None and any(parsed in network for network in allowed)
