"""An issuer's key set is cached per URL, refetched for an unknown kid at most once per
interval, and kept when a refetch fails; its URL goes through the address policy."""

from __future__ import annotations

import pytest

from infra.connectors.address_policy import AddressPolicy
from infra.errors import PermanentError
from infra.jwks import JwksCache
from tests.fakes.jwks import FakeJwks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_unknown_kid_refetches_at_most_once_a_minute() -> None:
    clock = Clock()
    with FakeJwks() as server:
        url = server.publish("a", {"kty": "oct", "kid": "one"})
        cache = JwksCache(AddressPolicy.parse(False, "127.0.0.1"), timer=clock)
        try:
            assert [k["kid"] for k in await cache.keys(url, "one")] == ["one"]
            server.publish("a", {"kty": "oct", "kid": "two"})
            for _ in range(5):  # tokens with a kid the cache lacks, within the minute
                assert [k["kid"] for k in await cache.keys(url, "two")] == ["one"]
            assert server.fetches["a"] == 1
            clock.now += 61
            assert [k["kid"] for k in await cache.keys(url, "two")] == ["two"]
            assert server.fetches["a"] == 2
            # A known kid needs no fetch, however many tokens carry it.
            clock.now += 61
            await cache.keys(url, "two")
            assert server.fetches["a"] == 2
        finally:
            await cache.close()


async def test_failed_refetch_keeps_the_cached_keys() -> None:
    clock = Clock()
    with FakeJwks() as server:
        url = server.publish("b", {"kty": "oct", "kid": "one"})
        cache = JwksCache(AddressPolicy.parse(False, "127.0.0.1"), timer=clock)
        try:
            await cache.keys(url, "one")
            server.failing.add("b")
            clock.now += 61
            assert [k["kid"] for k in await cache.keys(url, "other")] == ["one"]
            assert server.fetches["b"] == 2
        finally:
            await cache.close()


async def test_jwks_at_a_private_address_is_not_fetched() -> None:
    with FakeJwks() as server:
        url = server.publish("c", {"kty": "oct", "kid": "one"})
        cache = JwksCache(AddressPolicy.parse(False, ""))
        try:
            with pytest.raises(PermanentError, match="not a public address"):
                await cache.keys(url, "one")
            assert server.fetches["c"] == 0
        finally:
            await cache.close()
