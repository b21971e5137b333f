"""Rate windows in Redis: requests and tokens per minute of a key or an end user,
shared by every ingress process. A check and its count are one Lua script, so two
processes cannot both pass a check that only one of them fits in.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from infra.redis import Arg, ScriptStore, redis_errors
from infra.settings import Settings

UNLIMITED = 10**15  # per minute, for a window no limit applies to

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


@dataclass(frozen=True)
class RateWindow:
    admitted: bool
    refused_by: str | None
    requests_limit: int
    requests_used: int
    tokens_limit: int
    tokens_used: int
    reset_s: float


class RateWindows(ScriptStore):
    def __init__(self, settings: Settings, max_connections: int = 200) -> None:
        super().__init__(settings, max_connections)
        self._rate = self._redis.register_script(RATE)

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
        with redis_errors("write"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                for name, value in (("rpm", rpm), ("tpm", tpm)):
                    if value is not None:
                        pipe.hset(key, name, value)
                await pipe.execute()
