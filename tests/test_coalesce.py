"""The coalescer behind batched writes: batches form under load, results go to their callers."""

from __future__ import annotations

import asyncio

import pytest

from infra.coalesce import Coalescer


async def test_concurrent_submissions_share_flushes_and_keep_their_results() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        await asyncio.sleep(0)  # a round trip: others arrive meanwhile
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert len(flushes) < 10  # batched, not one flush per item
    assert [i for batch in flushes for i in batch] == list(range(100))  # in order


async def test_a_lone_submission_is_flushed_at_once() -> None:
    async def flush(items: list[str]) -> list[str]:
        return [s.upper() for s in items]

    coalescer: Coalescer[str, str] = Coalescer(flush)
    assert await asyncio.wait_for(coalescer.submit("x"), 1) == "X"


async def test_one_bad_item_fails_alone() -> None:
    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        if 13 in items:
            raise ValueError("13 is refused")
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await asyncio.gather(
        *(coalescer.submit(i) for i in range(20)), return_exceptions=True
    )
    assert [o for o in outcomes if isinstance(o, ValueError)] == [outcomes[13]]
    assert [o for i, o in enumerate(outcomes) if i != 13] == [i for i in range(20) if i != 13]


async def test_a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await release.wait()
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush)
    quitter = asyncio.ensure_future(coalescer.submit(1))
    stayer = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    assert await stayer == 2
    with pytest.raises(asyncio.CancelledError):
        await quitter
