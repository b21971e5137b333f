"""Many callers' small writes, made as one: a batch forms while the last one is in flight.

Nothing waits for a batch to fill: a lone caller's write goes at once, and
under load the writes that arrive during a round trip share the next one.
So one statement (or one pipeline) serves many concurrent handlers without
adding latency to any of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 500
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # The batch runs on its own task: a caller that gives up does not
        # cancel the write of the others.
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Nobody reads this outcome now; asyncio would log a failure of it
            # as "never retrieved" when the future is freed.
            future.add_done_callback(_retrieve)
            raise

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._settle(batch)

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # One bad item must not fail its neighbours: each on its own.
            for one in batch:
                await self._settle([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _retrieve(future: asyncio.Future[R]) -> None:
    if not future.cancelled():
        future.exception()
