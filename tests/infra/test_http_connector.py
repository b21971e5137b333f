"""An http connection's headers (its secret) go only to the origins it was created for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.http import Http, HttpCredentials, HttpRequest
from infra.errors import PermanentError
from tests.fakes.vendors import FakeVendors
from tests.harness import unique

SECRET = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def vendors() -> Iterator[FakeVendors]:
    with FakeVendors() as server:
        yield server


async def request(credentials: HttpCredentials, url: str) -> dict[str, object]:
    http = VendorHttp(5, AddressPolicy.parse(False, "127.0.0.1, localhost"))
    try:
        params = HttpRequest.model_validate({"method": "POST", "url": url, "json": {"a": 1}})
        return await Http(http).run("request", credentials, params, "key-1")
    finally:
        await http.close()


async def test_connection_headers_go_only_to_its_origins(vendors: FakeVendors) -> None:
    bound = HttpCredentials(headers=SECRET, base_url=f"{vendors.url}/http")
    mark = unique("o")
    assert (await request(bound, f"{vendors.url}/http/{mark}"))["status"] == 200
    others = [
        f"http://localhost:{vendors.port}/http/{mark}-host",  # same server, another origin
        f"http://127.0.0.1:{vendors.port + 1}/http/{mark}-port",
        f"https://127.0.0.1:{vendors.port}/http/{mark}-scheme",
        f"http://127.0.0.1:{vendors.port}@localhost:{vendors.port}/http/{mark}-userinfo",
    ]
    for url in others:
        with pytest.raises(PermanentError, match="is not an origin of this connection"):
            await request(bound, url)
    calls = vendors.matching("http", mark)
    assert [c.path for c in calls] == [f"/http/{mark}"]
    assert calls[0].headers["Authorization"] == "Bearer s3cret"


async def test_allowed_hosts_bind_by_host_name(vendors: FakeVendors) -> None:
    bound = HttpCredentials(headers=SECRET, allowed_hosts=["LocalHost"])
    mark = unique("h")
    assert (await request(bound, f"http://localhost:{vendors.port}/http/{mark}"))["status"] == 200
    with pytest.raises(PermanentError, match="is not an origin of this connection"):
        await request(bound, f"{vendors.url}/http/{mark}-other")
    assert len(vendors.matching("http", mark)) == 1


async def test_connection_of_before_the_binding_sends_its_headers_nowhere(
    vendors: FakeVendors,
) -> None:
    stored = HttpCredentials.model_validate_json('{"headers": {"Authorization": "Bearer old"}}')
    mark = unique("u")
    with pytest.raises(PermanentError, match="no base_url or allowed_hosts"):
        await request(stored, f"{vendors.url}/http/{mark}")
    assert vendors.matching("http", mark) == []
    # Without headers there is no secret to leak: any allowed address will do.
    assert (await request(HttpCredentials(), f"{vendors.url}/http/{mark}"))["status"] == 200


def test_new_connection_with_headers_must_name_its_origins() -> None:
    with pytest.raises(ValueError, match="headers need base_url or allowed_hosts"):
        HttpCredentials.model_validate({"headers": SECRET}, context={"creating": True})
    HttpCredentials.model_validate(
        {"headers": SECRET, "base_url": "https://api.example.com"}, context={"creating": True}
    )
