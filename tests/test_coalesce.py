"""The coalescer behind batched writes: batches form under load, results go to their callers."""

from __future__ import annotations

import asyncio
import gc

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


async def test_a_caller_that_gives_up_leaves_no_unretrieved_failure() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        started.set()
        await release.wait()
        raise ValueError("the write failed")

    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        coalescer: Coalescer[int, int] = Coalescer(flush)
        quitter = asyncio.ensure_future(coalescer.submit(1))
        await started.wait()
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        del quitter
        release.set()
        # Batches go in order: once this one has failed, the quitter's has too.
        with pytest.raises(ValueError):
            await coalescer.submit(2)
        del coalescer
        gc.collect()  # the abandoned future is freed: asyncio reports it if unretrieved
    finally:
        loop.set_exception_handler(previous)
    # Only this test's failure counts: the loop is shared with other tests.
    ours = [c for c in reported if str(c.get("exception")) == "the write failed"]
    assert [c["message"] for c in ours] == []
