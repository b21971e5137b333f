"""The async engine and sessions, and a plain asyncpg pool for the hot paths.

SQLAlchemy's statement compilation and result handling cost more CPU than
the query itself on a per-call path (a model call's start and finish); those
few statements are written in SQL and run on `pool()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class Database:
    def __init__(self, url: str, pool_size: int = 10) -> None:
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
                        self._dsn, min_size=1, max_size=self._pool_size, reset=_keep_session,
                        server_settings=settings,
                    )  # fmt: skip
                    self._pools[durable] = pool
        return pool

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        from sqlalchemy import text

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
