"""When each API key was last used, written at most once a minute per key per process.

`note` is called on every authenticated request and costs a dict lookup; the first use of a
key in a minute starts a write in the background, off the request's path. A failed write is
logged and the key's next use a minute later writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from cachetools import TTLCache

from infra.db.api_keys import touch_keys
from infra.db.engine import Database

log = logging.getLogger(__name__)

INTERVAL_S = 60.0
MAX_KEYS = 100_000


class KeyUses:
    def __init__(
        self,
        db: Database,
        interval_s: float = INTERVAL_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        # A key is in here for a minute after its use was written.
        self._written: TTLCache[uuid.UUID, bool] = TTLCache(MAX_KEYS, interval_s, timer)
        self._pending: set[asyncio.Task[None]] = set()

    def note(self, key_id: uuid.UUID) -> None:
        if key_id in self._written:
            return
        self._written[key_id] = True
        task = asyncio.create_task(self._write(key_id, datetime.now(UTC)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, key_id: uuid.UUID, at: datetime) -> None:
        try:
            await touch_keys(self._db, {key_id: at})
        except Exception as exc:  # a background task: nobody else would see it
            log.warning("last use of key %s not written: %s: %s", key_id, type(exc).__name__, exc)

    async def close(self) -> None:
        """Let the writes under way finish (they are short)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
