"""The async engine and sessions, and a plain asyncpg pool for the hot paths.

SQLAlchemy's statement compilation and result handling cost more CPU than
the query itself on a per-call path (a model call's start and finish); those
few statements are written in SQL and run on `pool()`.

`tenant_reads(tenant)` is the second wall between tenants: on a Database made
with `tenant_wall=True` (the ingress's), the read runs in a transaction as the
role `ayush_reader` with `ayush.tenant_id` set, so Postgres' row-level
security policies (migration 0930_tenant_wall) hide every other tenant's
rows even from a query that forgot its `tenant_id` filter. Writes and the
workers (the tables' owner, not subject to the policies) are unaffected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# The role the tenant-scoped reads run as, and the setting its policies read.
READER_ROLE = "ayush_reader"
TENANT_SETTING = "ayush.tenant_id"


class _TenantRow(Protocol):
    tenant_id: uuid.UUID


R = TypeVar("R", bound=_TenantRow)


class Database:
    def __init__(self, url: str, pool_size: int = 10, *, tenant_wall: bool = False) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
        )
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._pool_size = pool_size
        self._pools: dict[bool, asyncpg.Pool] = {}
        self._pool_lock = asyncio.Lock()
        self.tenant_wall = tenant_wall

    async def pool(self, *, durable: bool = True) -> asyncpg.Pool:
        """An asyncpg pool, opened on first use: most processes never need one.

        `durable=False` commits without waiting for the disk flush (Postgres'
        synchronous_commit off), for writes that a crash may lose because
        redelivery writes them again. The write-ahead log is flushed in order,
        so a durable commit made after such a write makes that write durable
        too.
        """
        pool = self._pools.get(durable)
        if pool is None:
            async with self._pool_lock:
                pool = self._pools.get(durable)
                if pool is None:
                    settings = {} if durable else {"synchronous_commit": "off"}
                    pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        reset=_keep_session,
                        server_settings=settings,
                    )
                    self._pools[durable] = pool
        return pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[AsyncSession]:
        """A read-write transaction. `durable=False`: its commit does not wait for the disk
        flush (as `pool(durable=False)`), for a write a durable commit follows before
        anyone is told of it: the log is flushed in order, so that one makes this durable."""
        async with self._sessions() as session, session.begin():
            if not durable:
                await session.execute(*_set_local({"synchronous_commit": "off"}))
            yield session

    async def add(self, row: Any) -> None:
        """Insert one new row (a table model), in a transaction of its own."""
        async with self.transaction() as session:
            session.add(row)

    async def get(self, model: type[R], id: Any, tenant_id: uuid.UUID | None = None) -> R | None:
        """The row by primary key; with `tenant_id`, only if it is that tenant's (read behind
        the wall). Without, by id alone: for callers that name no tenant."""
        if tenant_id is None:
            async with self.session() as session:
                return await session.get(model, id)
        async with self.tenant_reads(tenant_id) as session:
            found = await session.get(model, id)
        return found if found is not None and found.tenant_id == tenant_id else None

    @asynccontextmanager
    async def tenant_reads(
        self, tenant_id: uuid.UUID, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncSession]:
        """A read-only transaction that sees `tenant_id`'s rows only (with the wall on).

        Without `tenant_wall` it is a plain session: the callers' own
        `tenant_id` filters are then the only wall. `settings` are more
        transaction-local settings, set in the same round trip.
        """
        local = dict(settings or {})
        if self.tenant_wall:
            local = {"role": READER_ROLE, TENANT_SETTING: str(tenant_id), **local}
        async with self._sessions() as session:
            if local:
                # One round trip (PostgREST opens its requests the same way).
                await session.execute(*_set_local(local))
            # Closing the session rolls its connection back: the role and the
            # tenant end with the transaction. (An explicit rollback would
            # expire the rows read; a close keeps them loaded.)
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        await self.engine.dispose()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No reset query on release: the pool's users set no session state.

    asyncpg still rolls back a transaction left open before calling this; its
    default would add a round trip (RESET ALL, UNLISTEN, ...) to every use.
    """


def _set_local(settings: Mapping[str, str]) -> tuple[TextClause, dict[str, str]]:
    """One SELECT of set_config(name, value, true) per setting, values bound."""
    calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(settings)))
    params: dict[str, str] = {}
    for i, (name, value) in enumerate(settings.items()):
        params[f"n{i}"], params[f"v{i}"] = name, value
    return text(f"SELECT {calls}"), params
