"""Budget holds in Redis, shared by every ingress process and worker.

A hold reserves a job's estimated cost on every budget it spends (its tenant, its key,
its end user) until its usage settles it or it lapses. Each check-and-change is one Lua
script, so two processes admitting at the same moment cannot both pass a check that only
one of them fits in (the check-then-increment race). Money is kept as integer units of
1e-8 USD: Redis counts integers exactly, and the database keeps 8 decimal places.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from infra.redis import Arg, ScriptStore, redis_errors
from infra.settings import Settings

UNIT = Decimal("0.00000001")
PERIOD_TTL_S = 40 * 24 * 3600

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


class BudgetHolds(ScriptStore):
    def __init__(self, settings: Settings, max_connections: int = 200) -> None:
        super().__init__(settings, max_connections)
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)

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
        with redis_errors("reserve"):
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
        with redis_errors("settle"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in settlements:
                    keys, args = self._settle_call(item, now)
                    await self._settle(keys=keys, args=args, client=pipe)
                await pipe.execute()

    def _settle_call(self, item: Settlement, now: int) -> tuple[list[str], list[Any]]:
        holds = item.hold_ids
        keys = self._hold_keys(item.tenant_id) + [
            self._counter_key(item.tenant_id, scope, period) for scope, period, _ in item.spent
        ]
        args: list[Any] = [now, PERIOD_TTL_S, ",".join(holds)]
        args += [to_units(usd) for _, _, usd in item.spent]
        return keys, args

    async def set_limit(self, tenant_id: uuid.UUID, scope: Scope, usd: Decimal) -> None:
        with redis_errors("write"):
            await self._redis.set(self._limit_key(tenant_id, scope), to_units(usd))

    async def clear_limit(self, tenant_id: uuid.UUID, scope: Scope) -> None:
        """No limit of its own: a user is held to the tenant's default again."""
        with redis_errors("write"):
            await self._redis.delete(self._limit_key(tenant_id, scope))

    async def reserved(self, tenant_id: uuid.UUID, scope: Scope, period: str) -> Decimal:
        with redis_errors("read"):
            value = await self._redis.hget(self._counter_key(tenant_id, scope, period), "reserved")
        return from_units(max(int(value or 0), 0))


def _now_ms() -> int:
    return int(time.time() * 1000)
