"""Where a request comes from, for keys that may be used only from some addresses.

The peer's address is the client's, unless the peer is one of the operator's proxies
(`AYUSH_TRUSTED_PROXIES`, CIDRs; empty by default: nobody is trusted). Then the client is
the first address of `X-Forwarded-For`, read from the right, that is not itself a trusted
proxy: a client can put anything at the left of that header, but not past its own proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError on anything else."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def parse_networks(setting: str) -> tuple[Network, ...]:
    """A comma-separated setting of CIDRs."""
    return networks(setting.split(","))


def _address(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _within(address: Address, nets: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_address(request: HTTPConnection, trusted: tuple[Network, ...]) -> Address | None:
    """The client's address, or None when it cannot be told (never a guess)."""
    peer = _address(request.client.host) if request.client is not None else None
    if peer is None or not trusted or not _within(peer, trusted):
        return peer
    hops = [h for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # a hop we cannot read: the client's address is unknown
        client = address
        if not _within(address, trusted):
            break
    return client


def allowed(address: Address | None, allowed_ips: Iterable[str]) -> bool:
    """Whether a key limited to `allowed_ips` may be used from `address`."""
    if address is None:
        return False
    try:
        return _within(address, networks(allowed_ips))
    except ValueError:
        return False  # a malformed entry never opens the key
