"""Redis away is a TransientError from every Redis adapter, through one mapping."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.budget_holds import BudgetHolds, Scope
from infra.errors import TransientError
from infra.local_stack.process import free_port
from infra.rate_windows import RateWindows
from infra.redis import connect, redis_errors
from infra.settings import Settings


def _nowhere() -> Settings:
    """Settings whose Redis is a port nothing listens on."""
    return Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql+asyncpg://x@127.0.0.1:1/x",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )


def test_redis_errors_maps_redis_and_connection_errors_to_transient() -> None:
    for raised in (RedisConnectionError("refused"), ConnectionResetError("reset by peer")):
        with (
            pytest.raises(TransientError, match="redis read failed") as caught,
            redis_errors("read"),
        ):
            raise raised
        assert caught.value.__cause__ is raised
    with pytest.raises(ValueError), redis_errors("read"):  # not Redis's: passes through
        raise ValueError("a bug")


async def test_a_client_without_redis_raises_transient_error() -> None:
    client = connect(_nowhere(), 1)
    try:
        with pytest.raises(TransientError), redis_errors("read"):
            await client.get("anything")
    finally:
        await client.aclose()


async def test_budget_holds_and_rate_windows_without_redis_raise_transient_error() -> None:
    settings = _nowhere()
    holds, windows = BudgetHolds(settings, 1), RateWindows(settings, 1)
    tenant, hold = uuid.uuid4(), uuid.uuid4()
    scope = Scope("tenant", tenant)
    calls = [
        holds.reserve(tenant, [scope], "2026-12", hold, Decimal("0.01"), 60),
        holds.reserve_many(tenant, [scope], "2026-12", [(hold, Decimal("0.01"))], 60),
        holds.release(tenant, hold),
        holds.set_limit(tenant, scope, Decimal("1")),
        holds.clear_limit(tenant, scope),
        holds.reserved(tenant, scope, "2026-12"),
        windows.hit(tenant, requests=1, tokens=1, rpm=10, tpm=10),
        windows.hit_user(tenant, uuid.uuid4(), requests=1, tokens=1),
        windows.set_key_limits(tenant, 5, None),
        windows.set_user_limits(tenant, None, 5, None),
    ]
    try:
        for call in calls:
            with pytest.raises(TransientError):
                await call
    finally:
        await holds.close()
        await windows.close()
