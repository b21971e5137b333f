"""Which addresses the generic HTTP connector may reach (server-side request forgery).

A tenant chooses that connector's URL, so without a policy it could read the cloud metadata
service, the admin ports of our own services or anything else inside the network. By default
every address that is not globally routable is refused: private, loopback, link-local,
unspecified, shared (CGNAT), reserved, multicast. `allow_private` lifts that for development;
the metadata addresses stay refused unless allow-listed by name or network.

The check runs where the socket is opened (an httpcore network backend): every address the
host resolves to is checked, and the connection goes to a checked address, so a DNS answer that
changes between a check and the connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpcore
import httpx

from infra.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# AWS, GCP, Azure, OpenStack (169.254.169.254), AWS over IPv6, Alibaba Cloud.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$", re.I)


@dataclass(frozen=True)
class AddressPolicy:
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def parse(cls, allow_private: bool, allow: str) -> AddressPolicy:
        """`allow`: comma-separated host names and networks ("api.internal, 10.2.0.0/16")."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in filter(None, (e.strip() for e in allow.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not HOST_NAME.match(entry):
                    raise ValueError(f"not a host name or network: {entry!r}") from None
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `host` may not be reached at `address`, or None when it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if host.lower().rstrip(".") in self.allowed_hosts:
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        if address in METADATA:
            return "a cloud metadata address"
        if address.is_global and not address.is_multicast:
            return None
        if self.allow_private and not address.is_multicast:
            return None
        return "not a public address"

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`, all of them checked; refuses when any one is refused."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            reason = self.refusal(host, ipaddress.ip_address(text.split("%")[0]))
            if reason is not None:
                raise PermanentError(
                    f"http connector refused {host} ({text}): {reason}; allow it with "
                    "AYUSH_HTTP_CONNECTOR_ALLOW or AYUSH_HTTP_CONNECTOR_ALLOW_PRIVATE"
                )
        return addresses

    async def check_redirect(self, origin: httpx.URL, location: str) -> None:
        """Refuses a redirect whose target this policy would refuse to connect to."""
        target = origin.join(location)
        if target.scheme not in ("http", "https") or not target.host:
            return
        try:
            await self.resolve(
                target.host, target.port or (443 if target.scheme == "https" else 80)
            )
        except httpcore.ConnectError:
            return  # a target that does not resolve cannot be reached either
        except PermanentError as refused:
            raise PermanentError(f"redirect to a refused address: {refused}") from None


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections only to addresses the policy allows."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        # TLS still verifies the certificate against `host`: httpcore passes the
        # URL's host name as SNI, not the address connected to.
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"no address for {host}")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose sockets go through the policy.

    httpx does not take a network backend, so the pool it built is replaced by an equal one
    that has ours. No proxies from the environment: a proxy would open the sockets instead.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            # httpx's default limits
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(policy),
        )
