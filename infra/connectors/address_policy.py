"""Which addresses a connector whose target the tenant chooses may reach (SSRF).

A tenant chooses the generic HTTP connector's URL and the email connector's SMTP host, so without
a policy either could read the cloud metadata service, the admin ports of our own services or
anything else inside the network. By default every address that is not globally routable is
refused: private, loopback, link-local, unspecified, shared (CGNAT), reserved, multicast, the
IETF protocol block 192.0.0.0/24. An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address it reaches. `allow_private`
lifts that for development; the metadata addresses stay refused unless allow-listed by name or
network.

Every connection goes through `connect` (blocking libraries such as smtplib) or the httpcore
network backend below (httpx), and both connect only to addresses `checked` returned: every
address the host resolves to is checked, and the connection goes to a checked address, so a DNS
answer that changes between a check and the connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpcore
import httpx

from infra.errors import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, Oracle
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public address: refused by name)
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)
# Refused whatever the Python version says of them (its `is_global` changed in patch
# releases): the IETF protocol assignments (192.0.0.9 and .10 are anycast services, not
# webhook targets), IPv4-compatible IPv6 (deprecated) and local-use NAT64.
NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("192.0.0.0/24", "::/96", "64:ff9b:1::/48"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$", re.I)
SETTINGS_HINT = "allow it with AYUSH_CONNECTOR_ALLOW or AYUSH_CONNECTOR_ALLOW_PRIVATE"


def reached(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries to (mapped, NAT64, 6to4), else the address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address


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
        if host.lower().rstrip(".") in self.allowed_hosts:
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        address = reached(address)
        if any(address in network for network in self.allowed_networks):
            return None
        if address in METADATA:
            return "a cloud metadata address"
        if address.is_multicast:
            return "not a public address"
        public = address.is_global and not any(address in n for n in NOT_PUBLIC)
        if public or self.allow_private:
            return None
        return "not a public address"

    def checked(self, host: str, infos: Sequence[tuple[Any, ...]]) -> list[str]:
        """The addresses of a `getaddrinfo` answer, all of them checked; refuses when any is."""
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            reason = self.refusal(host, ipaddress.ip_address(text.split("%")[0]))
            if reason is not None:
                raise PermanentError(f"refused {host} ({text}): {reason}; {SETTINGS_HINT}")
        if not addresses:
            raise TransientError(f"no address for {host}")
        return addresses

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of `host`, all of them checked; refuses when any one is refused."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        return self.checked(host, infos)

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP socket to `host` opened at a checked address (for blocking clients).

        Resolution and connection failures are TransientError (nothing was sent); a refused
        address is PermanentError. The errors name our host and port, never a remote's words.
        """
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TransientError(f"cannot resolve {host}") from exc
        self.checked(host, infos)
        failure: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
        reason = type(failure).__name__ if failure else "no address"
        raise TransientError(f"cannot connect to {host}:{port} ({reason})")

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


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections only to addresses the policy allows.

    `core` is the httpcore module whose pool uses the backend: httpcore for httpx, or a
    fork of it with the same interface (the MCP SDK's httpx2 runs on httpcore2); its
    errors are raised, so that its client maps them as it maps its own.
    """

    def __init__(self, policy: AddressPolicy, core: ModuleType = httpcore) -> None:
        self._policy = policy
        self._core = core
        self._backend = core.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        core = self._core
        failure: Exception | None = None
        # TLS still verifies the certificate against `host`: httpcore passes the
        # URL's host name as SNI, not the address connected to.
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError as exc:
            raise core.ConnectTimeout(f"resolving {host} timed out") from exc
        except httpcore.ConnectError as exc:
            raise core.ConnectError(str(exc)) from exc
        for address in addresses:
            try:
                stream: httpcore.AsyncNetworkStream = await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
                return stream
            except core.ConnectError as exc:
                failure = exc
        raise failure or core.ConnectError(f"no address for {host}")

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
            network_backend=CheckedBackend(policy),
        )
