"""Vendor answers become retry-with-wait or fail-at-once."""

from __future__ import annotations

import time

import httpx

from infra.connectors.base import vendor_error
from infra.errors import PermanentError, TransientError


def answer(
    status: int, headers: dict[str, str] | None = None, json: object = None
) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json)


def test_rate_limits_carry_the_vendors_wait() -> None:
    slack = vendor_error("slack", answer(429, {"Retry-After": "7"}))
    assert isinstance(slack, TransientError) and slack.retry_after == 7
    telegram = vendor_error(
        "telegram", answer(429, json={"ok": False, "parameters": {"retry_after": 3}})
    )
    assert isinstance(telegram, TransientError) and telegram.retry_after == 3
    discord = vendor_error("discord", answer(429, json={"retry_after": 0.25, "global": False}))
    assert isinstance(discord, TransientError) and discord.retry_after == 0.25
    reset = str(int(time.time()) + 30)
    github = vendor_error(
        "github", answer(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    )
    assert isinstance(github, TransientError) and 25 < (github.retry_after or 0) <= 30
    assert isinstance(vendor_error("notion", answer(503)), TransientError)


def test_refusals_fail_at_once() -> None:
    for status in (400, 401, 403, 404, 422):
        error = vendor_error("github", answer(status, json={"message": "Bad credentials"}))
        assert isinstance(error, PermanentError), status
        assert f"answered {status}" in str(error) and "Bad credentials" in str(error)
