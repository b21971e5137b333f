"""An answer can cost a worker at most `max_response_bytes` and `timeout_s`, whatever it is."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from infra.connectors.base import VendorHttp
from infra.errors import PermanentError
from tests.fakes.hostile import HostileHttp
from tests.fakes.vendors import FakeVendors


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileHttp]:
    with HostileHttp() as server:
        yield server


async def test_endless_answer_is_cut_at_the_byte_cap(hostile: HostileHttp) -> None:
    http = VendorHttp(10, max_response_bytes=256 * 1024)
    started = time.monotonic()
    try:
        with pytest.raises(PermanentError, match=r"more than 262144 bytes; the rest was not read"):
            await http.call("http", "GET", f"{hostile.url}/huge")
    finally:
        await http.close()
    assert time.monotonic() - started < 5
    # The server was stopped by the closed connection, not by having sent everything.
    assert hostile.sent < 64 * 1024 * 1024


async def test_trickling_answer_is_cut_at_one_overall_deadline(hostile: HostileHttp) -> None:
    # Each byte arrives well within the timeout; the answer as a whole never does.
    http = VendorHttp(1)
    started = time.monotonic()
    try:
        with pytest.raises(PermanentError, match=r"did not answer within 1 s; outcome unknown"):
            await http.call("http", "GET", f"{hostile.url}/trickle")
    finally:
        await http.close()
    assert time.monotonic() - started < 3


async def test_answers_within_the_cap_are_read_whole() -> None:
    with FakeVendors() as vendors:
        http = VendorHttp(5, max_response_bytes=4096)
        try:
            response = await http.call("http", "POST", f"{vendors.url}/http/x", json={"a": 1})
        finally:
            await http.close()
    assert response.json() == {"echo": {"a": 1}, "method": "POST"}
