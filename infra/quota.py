"""Budgets and rate limits in Redis, shared by every ingress process.

Each check-and-change is one Lua script, so two processes admitting at the
same moment cannot both pass a check that only one of them fits in (the
check-then-increment race). Money is kept as integer units of 1e-8 USD:
Redis counts integers exactly, and the database keeps 8 decimal places.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from infra.errors import TransientError
from infra.redis import Arg, ScriptCalls
from infra.settings import Settings

UNIT = Decimal("0.00000001")
PERIOD_TTL_S = 40 * 24 * 3600
UNLIMITED = 10**15  # per minute, for a window no limit applies to

_RELEASE = """
local function release(id)
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local hold = cjson.decode(v)
    for _, k in ipairs(hold.k) do redis.call('HINCRBY', k, 'reserved', 0 - tonumber(hold.a)) end
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)) do
  release(id)
end
"""

# KEYS: holds, hold deadlines, then (limit, fallback limit, period counters) per scope. The
# fallback applies when the scope has no limit of its own: a user without an override is
# held to the tenant's default for its users, one key however many users there are.
# ARGV: now ms, amount, hold id, hold ttl ms, period ttl s.
# Returns 0 when reserved, else the 1-based index of the scope that refused.
RESERVE = (
    _RELEASE
    + """
-- A hold already made stands: asking again (a retried publish) must not be refused.
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then return 0 end
local amount = tonumber(ARGV[2])
local n = (#KEYS - 2) / 3
for i = 1, n do
  local limit = redis.call('GET', KEYS[3 * i]) or redis.call('GET', KEYS[3 * i + 1])
  if limit then
    limit = tonumber(limit)
    local spent = tonumber(redis.call('HGET', KEYS[3 * i + 2], 'spent') or '0')
    local reserved = tonumber(redis.call('HGET', KEYS[3 * i + 2], 'reserved') or '0')
    if spent >= limit or spent + reserved + amount > limit then return i end
  end
end
local counters = {}
for i = 1, n do
  redis.call('HINCRBY', KEYS[3 * i + 2], 'reserved', ARGV[2])
  redis.call('EXPIRE', KEYS[3 * i + 2], ARGV[5])
  counters[i] = KEYS[3 * i + 2]
end
redis.call('HSET', KEYS[1], ARGV[3], cjson.encode({a = ARGV[2], k = counters}))
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4] * 2)
redis.call('PEXPIRE', KEYS[2], ARGV[4] * 2)
return 0
"""
)

# KEYS: holds, hold deadlines, then period counters whose spend is known.
# ARGV: now ms, period ttl s, the hold ids joined by commas, then one spend per counter.
# One string for thousands of ids: packing each as an argument costs the worker more.
# Spend only grows within a period, so an older (smaller) figure never wins.
SETTLE = (
    _RELEASE
    + """
for id in string.gmatch(ARGV[3], '[^,]+') do release(id) end
for i = 3, #KEYS do
  local spent = ARGV[i + 1]
  local current = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  if tonumber(spent) > current then redis.call('HSET', KEYS[i], 'spent', spent) end
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""
)

# KEYS: requests counter, tokens counter of this minute, the subject's own limits (a hash),
# optionally the limits of its kind (a hash: a tenant's default for its users).
# ARGV: requests, tokens, default rpm, default tpm, ttl.
# Returns {admitted, requests used, tokens used, refused by: 0 none, 1 requests, 2 tokens,
# rpm, tpm}: the limits that applied, each the subject's own where it has it, else its
# kind's, else the default.
RATE = """
local function limit(name, default)
  local own = redis.call('HGET', KEYS[3], name)
  if not own and #KEYS > 3 then own = redis.call('HGET', KEYS[4], name) end
  return tonumber(own or default)
end
local rpm = limit('rpm', ARGV[3])
local tpm = limit('tpm', ARGV[4])
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local req, tok = tonumber(ARGV[1]), tonumber(ARGV[2])
if req > 0 and r + req > rpm then return {0, r, t, 1, rpm, tpm} end
if tok > 0 and t + tok > tpm then return {0, r, t, 2, rpm, tpm} end
if req > 0 then r = redis.call('INCRBY', KEYS[1], req); redis.call('EXPIRE', KEYS[1], ARGV[5]) end
if tok > 0 then t = redis.call('INCRBY', KEYS[2], tok); redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return {1, r, t, 0, rpm, tpm}
"""


def to_units(usd: Decimal) -> int:
    return int((usd / UNIT).to_integral_value())


def from_units(units: int) -> Decimal:
    return (Decimal(units) * UNIT).quantize(UNIT)


@dataclass(frozen=True)
class Scope:
    """A budget owner: the tenant itself ("tenant", tenant id), one key ("key", key id) or
    one end user ("user", `schemas.ids.user_subject`). ("users", tenant id) holds only the
    tenant's default limit for a user without one of their own."""

    kind: str
    id: uuid.UUID


@dataclass(frozen=True)
class Settlement:
    """What one tenant's usage settles: reservations to release, spend now known."""

    tenant_id: uuid.UUID
    hold_ids: list[str]
    spent: list[tuple[Scope, str, Decimal]]


@dataclass(frozen=True)
class RateWindow:
    admitted: bool
    refused_by: str | None
    requests_limit: int
    requests_used: int
    tokens_limit: int
    tokens_used: int
    reset_s: float


class Quotas:
    def __init__(self, settings: Settings, max_connections: int = 200) -> None:
        _, _, url = settings.require_services()
        self._redis: Redis = Redis.from_url(url, max_connections=max_connections)
        self._prefix = f"{settings.topic_prefix}ayush:"
        self._scripts = ScriptCalls(self._redis)  # concurrent requests share round trips
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
        self._rate = self._redis.register_script(RATE)

    # Every key of a tenant shares one hash tag: on Redis Cluster the scripts
    # touch one slot.
    def _budget(self, tenant_id: uuid.UUID, rest: str) -> str:
        return f"{self._prefix}budget:{{{tenant_id}}}:{rest}"

    def _limit_key(self, tenant_id: uuid.UUID, scope: Scope) -> str:
        return self._budget(tenant_id, f"{scope.kind}:{scope.id}:limit")

    def _limit_keys(self, tenant_id: uuid.UUID, scope: Scope) -> list[str]:
        """The scope's own limit, then the one that applies when it has none."""
        fallback = Scope("users", tenant_id) if scope.kind == "user" else scope
        return [self._limit_key(tenant_id, scope), self._limit_key(tenant_id, fallback)]

    def _scope_keys(self, tenant_id: uuid.UUID, scopes: list[Scope], period: str) -> list[str]:
        keys = self._hold_keys(tenant_id)
        for scope in scopes:
            keys += [
                *self._limit_keys(tenant_id, scope),
                self._counter_key(tenant_id, scope, period),
            ]
        return keys

    def _counter_key(self, tenant_id: uuid.UUID, scope: Scope, period: str) -> str:
        return self._budget(tenant_id, f"{scope.kind}:{scope.id}:{period}")

    def _hold_keys(self, tenant_id: uuid.UUID) -> list[str]:
        return [self._budget(tenant_id, "holds"), self._budget(tenant_id, "holds:due")]

    async def reserve(
        self,
        tenant_id: uuid.UUID,
        scopes: list[Scope],
        period: str,
        hold_id: uuid.UUID,
        amount: Decimal,
        hold_ttl_s: int,
    ) -> Scope | None:
        """Reserve `amount` on every scope at once; the scope whose budget refused, or None."""
        keys = self._scope_keys(tenant_id, scopes, period)
        args: list[Arg] = [
            _now_ms(),
            to_units(amount),
            str(hold_id),
            hold_ttl_s * 1000,
            PERIOD_TTL_S,
        ]
        refused = int(await self._call(self._reserve, keys, args))
        return scopes[refused - 1] if refused else None

    async def reserve_many(
        self,
        tenant_id: uuid.UUID,
        scopes: list[Scope],
        period: str,
        holds: list[tuple[uuid.UUID, Decimal]],
        hold_ttl_s: int,
        users: list[Scope | None] | None = None,
    ) -> list[Scope | None]:
        """`reserve` for many holds in one round trip, in order: for each, the scope
        that refused it, or None. Once a budget is spent, the holds after are refused.
        `users`, one per hold: the user whose budget the hold also spends, if any."""
        shared = self._scope_keys(tenant_id, scopes, period)
        users = users or [None] * len(holds)
        now = _now_ms()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (hold_id, amount), user in zip(holds, users, strict=True):
                    keys = (
                        shared
                        if user is None
                        else self._scope_keys(tenant_id, [*scopes, user], period)
                    )
                    args: list[Any] = [
                        now,
                        to_units(amount),
                        str(hold_id),
                        hold_ttl_s * 1000,
                        PERIOD_TTL_S,
                    ]
                    await self._reserve(keys=keys, args=args, client=pipe)
                answers = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis reserve failed: {exc}") from exc
        return [
            [*scopes, user][int(a) - 1] if int(a) else None
            for a, user in zip(answers, users, strict=True)
        ]

    async def release(self, tenant_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        await self.settle(tenant_id, [hold_id], [])

    async def settle(
        self,
        tenant_id: uuid.UUID,
        hold_ids: Iterable[uuid.UUID],
        spent: list[tuple[Scope, str, Decimal]],
    ) -> None:
        """Release these holds and raise the known spend of (scope, period) counters."""
        await self.settle_many([Settlement(tenant_id, [str(h) for h in hold_ids], spent)])

    async def settle_many(self, settlements: list[Settlement]) -> None:
        """Several tenants' settlements in one round trip (one script call each)."""
        if not settlements:
            return
        now = _now_ms()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in settlements:
                    keys, args = self._settle_call(item, now)
                    await self._settle(keys=keys, args=args, client=pipe)
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis settle failed: {exc}") from exc

    def _settle_call(self, item: Settlement, now: int) -> tuple[list[str], list[Any]]:
        holds = item.hold_ids
        keys = self._hold_keys(item.tenant_id) + [
            self._counter_key(item.tenant_id, scope, period) for scope, period, _ in item.spent
        ]
        args: list[Any] = [now, PERIOD_TTL_S, ",".join(holds)]
        args += [to_units(usd) for _, _, usd in item.spent]
        return keys, args

    async def set_limit(self, tenant_id: uuid.UUID, scope: Scope, usd: Decimal) -> None:
        try:
            await self._redis.set(self._limit_key(tenant_id, scope), to_units(usd))
        except RedisError as exc:
            raise TransientError(f"redis: {exc}") from exc

    async def clear_limit(self, tenant_id: uuid.UUID, scope: Scope) -> None:
        """No limit of its own: a user is held to the tenant's default again."""
        try:
            await self._redis.delete(self._limit_key(tenant_id, scope))
        except RedisError as exc:
            raise TransientError(f"redis: {exc}") from exc

    async def reserved(self, tenant_id: uuid.UUID, scope: Scope, period: str) -> Decimal:
        try:
            value = await self._redis.hget(self._counter_key(tenant_id, scope, period), "reserved")
        except RedisError as exc:
            raise TransientError(f"redis: {exc}") from exc
        return from_units(max(int(value or 0), 0))

    async def hit(
        self, key_id: uuid.UUID, *, requests: int, tokens: int, rpm: int, tpm: int
    ) -> RateWindow:
        """Count a request and/or tokens against this minute's window of a key, if they fit.

        `rpm` and `tpm` are the defaults: a key with limits of its own
        (`set_key_limits`) is held to those instead.
        """
        now = time.time()
        window = int(now // 60)
        base = f"{self._prefix}rate:{{{key_id}}}"
        keys = [f"{base}:{window}:r", f"{base}:{window}:t", f"{base}:limits"]
        return await self._window(keys, window, now, [requests, tokens, rpm, tpm])

    async def hit_user(
        self, tenant_id: uuid.UUID, user: uuid.UUID, *, requests: int, tokens: int
    ) -> RateWindow:
        """`hit` for one end user (`schemas.ids.user_subject`), held to their own limits
        or else the tenant's default for its users (`set_user_limits`); unlimited when
        neither says. A window of its own: a signed-in user's key window is apart."""
        now = time.time()
        window = int(now // 60)
        base = self._user_rate(tenant_id, str(user))
        keys = [f"{base}:{window}:r", f"{base}:{window}:t", f"{base}:limits"]
        keys.append(f"{self._user_rate(tenant_id, 'default')}:limits")
        return await self._window(keys, window, now, [requests, tokens, UNLIMITED, UNLIMITED])

    def _user_rate(self, tenant_id: uuid.UUID, who: str) -> str:
        return f"{self._prefix}user-rate:{{{tenant_id}}}:{who}"

    async def set_user_limits(
        self, tenant_id: uuid.UUID, user: uuid.UUID | None, rpm: int | None, tpm: int | None
    ) -> None:
        """A user's own limits (`user` None: the tenant's default for its users) from the
        next request on, everywhere; None: the default (or no limit) applies."""
        key = f"{self._user_rate(tenant_id, 'default' if user is None else str(user))}:limits"
        await self._replace_limits(key, rpm, tpm)

    async def _window(
        self, keys: list[str], window: int, now: float, args: list[Arg]
    ) -> RateWindow:
        result = await self._call(self._rate, keys, [*args, 120])
        admitted, used_r, used_t, refused, rpm, tpm = (int(v) for v in result)
        return RateWindow(
            admitted=bool(admitted),
            refused_by={1: "requests", 2: "tokens"}.get(refused),
            requests_limit=rpm,
            requests_used=used_r,
            tokens_limit=tpm,
            tokens_used=used_t,
            reset_s=(window + 1) * 60 - now,
        )

    async def set_key_limits(self, key_id: uuid.UUID, rpm: int | None, tpm: int | None) -> None:
        """Hold a key to its own limits from its next request on, everywhere; None: default."""
        await self._replace_limits(f"{self._prefix}rate:{{{key_id}}}:limits", rpm, tpm)

    async def _replace_limits(self, key: str, rpm: int | None, tpm: int | None) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                for name, value in (("rpm", rpm), ("tpm", tpm)):
                    if value is not None:
                        pipe.hset(key, name, value)
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis: {exc}") from exc

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self._scripts.call(script, keys, args)
        except RedisError as exc:
            raise TransientError(f"redis script failed: {exc}") from exc

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _now_ms() -> int:
    return int(time.time() * 1000)
