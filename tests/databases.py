"""Throw-away Postgres databases next to the test one, for rebuilding projections."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from infra.db.migrate import upgrade


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_empty_database(url: str) -> str:
    """A new, migrated database on the same server; returns its URL."""
    name = f"rebuild_{uuid.uuid4().hex[:12]}"
    await _admin(url, f'CREATE DATABASE "{name}"')
    new_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, new_url)
    return new_url


async def drop_database(url: str, new_url: str) -> None:
    name = make_url(new_url).database
    await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
