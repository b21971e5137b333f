"""The generic HTTP connector reaches public addresses only, unless told otherwise."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from aiohttp import web

from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.http import Http, HttpCredentials, HttpRequest
from infra.errors import PermanentError
from tests.fakes.server import BackgroundServer


class Target(BackgroundServer):
    """A server on loopback that counts requests and redirects where it is asked to."""

    name = "redirecting server"

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/hit", self._hit)
        app.router.add_get("/redirect", self._redirect)
        return app

    async def _hit(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"ok": True})

    async def _redirect(self, request: web.Request) -> web.Response:
        self.hits += 1
        raise web.HTTPFound(request.query["to"])


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Target() as server:
        yield server


async def request(policy: AddressPolicy, url: str, method: str = "POST") -> dict[str, object]:
    http = VendorHttp(5, policy)
    try:
        params = HttpRequest.model_validate({"method": method, "url": url, "json": {"a": 1}})
        return await Http(http).run("request", HttpCredentials(), params, "key-1")
    finally:
        await http.close()


async def test_loopback_is_refused_by_default_and_nothing_is_sent(target: Target) -> None:
    before = target.hits
    for host in ("127.0.0.1", "localhost"):  # by address and by a name resolving to it
        with pytest.raises(PermanentError, match=r"refused .*not a public address"):
            await request(AddressPolicy(), f"http://{host}:{target.port}/hit")
    assert target.hits == before


async def test_loopback_is_reached_when_allowed(target: Target) -> None:
    for policy in (
        AddressPolicy(allow_private=True),
        AddressPolicy.parse(False, "127.0.0.0/8"),
        AddressPolicy.parse(False, " example.org , LocalHost"),
    ):
        before = target.hits
        host = "localhost" if policy.allowed_hosts else "127.0.0.1"
        result = await request(policy, f"http://{host}:{target.port}/hit")
        assert result == {"status": 200, "body": {"ok": True}}
        assert target.hits == before + 1


async def test_redirect_into_a_private_address_is_refused(target: Target) -> None:
    allowed = AddressPolicy.parse(False, "127.0.0.1")
    base = f"http://127.0.0.1:{target.port}"
    for to in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/admin"):
        with pytest.raises(PermanentError, match="redirect to a refused address"):
            await request(allowed, f"{base}/redirect?to={to}", method="GET")
    # A redirect within what is allowed is handed back as the answer, as before.
    result = await request(allowed, f"{base}/redirect?to=/hit", method="GET")
    assert result["status"] == 302


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "0.0.0.0", "169.254.1.1",
     "100.64.0.1", "224.0.0.251", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "ff02::1"],
)  # fmt: skip
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert AddressPolicy().refusal("h", ipaddress.ip_address(address)) is not None


def test_metadata_needs_an_explicit_entry_even_where_private_is_allowed() -> None:
    metadata = ipaddress.ip_address("169.254.169.254")
    assert AddressPolicy(allow_private=True).refusal("h", metadata) == "a cloud metadata address"
    assert AddressPolicy(allow_private=True).refusal("h", ipaddress.ip_address("10.0.0.1")) is None
    assert AddressPolicy.parse(False, "169.254.169.254/32").refusal("h", metadata) is None


def test_public_addresses_pass_and_bad_entries_are_rejected() -> None:
    for address in ("93.184.215.14", "2606:4700::6810:84e5"):
        assert AddressPolicy().refusal("h", ipaddress.ip_address(address)) is None
    with pytest.raises(ValueError, match="not a host name or network"):
        AddressPolicy.parse(False, "10.0.0.0/8, http://x")


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of loopback, 10/8, IMDS
     "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1",  # 6to4 of the same
     "::7f00:1", "64:ff9b:1::a00:1"],  # IPv4-compatible, local-use NAT64
)  # fmt: skip
def test_ipv6_wrapping_a_private_ipv4_is_refused(address: str) -> None:
    assert AddressPolicy().refusal("h", ipaddress.ip_address(address)) is not None


def test_ipv6_wrapping_a_public_ipv4_is_judged_by_it() -> None:
    for address in ("64:ff9b::5db8:d70e", "2002:5db8:d70e::1"):  # 93.184.215.14
        assert AddressPolicy().refusal("h", ipaddress.ip_address(address)) is None
    wrapped_metadata = ipaddress.ip_address("64:ff9b::a9fe:a9fe")
    assert AddressPolicy(allow_private=True).refusal("h", wrapped_metadata) == (
        "a cloud metadata address"
    )


@pytest.mark.parametrize(
    "address", ["168.63.129.16", "169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
)
def test_every_cloud_metadata_address_is_refused_even_where_private_is_allowed(
    address: str,
) -> None:
    refusal = AddressPolicy(allow_private=True).refusal("h", ipaddress.ip_address(address))
    assert refusal == "a cloud metadata address"


@pytest.mark.parametrize("address", ["192.0.0.1", "192.0.0.9", "192.0.0.10", "192.0.0.170"])
def test_ietf_protocol_block_is_refused_whatever_the_python_version(address: str) -> None:
    assert AddressPolicy().refusal("h", ipaddress.ip_address(address)) == "not a public address"
