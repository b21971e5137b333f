"""A job's events as Server-Sent Events, resumable by `Last-Event-ID`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from infra.db import jobs as job_store
from infra.errors import TransientError
from infra.redis import TERMINAL
from producers.ingress.state import Services
from schemas.money import usd_text

KEEPALIVE_MS = 15_000


def _frame(event_id: str, type_: str, data: dict[str, Any]) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id.encode(),
        type_.encode(),
        orjson.dumps(data),
    )


async def job_event_stream(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, last_event_id: str | None
) -> AsyncIterator[bytes]:
    after = last_event_id or "0-0"
    yield b"retry: 1000\n\n"
    while True:
        try:
            events = await svc.streams.read(job_id, after=after, block_ms=KEEPALIVE_MS)
        except TransientError:
            # End the response: the client reconnects with Last-Event-ID and loses nothing.
            return
        if not events:
            if not await svc.streams.exists(job_id):
                # The live stream expired (or was never written): the stored
                # job still tells how it ended.
                async for frame in _from_database(svc, tenant_id, job_id, after):
                    yield frame
                return
            yield b": keepalive\n\n"
            continue
        for event in events:
            yield _frame(event.id, event.type, event.data)
            after = event.id
            if event.type == TERMINAL:
                return


async def _from_database(
    svc: Services, tenant_id: uuid.UUID, job_id: uuid.UUID, after: str
) -> AsyncIterator[bytes]:
    found = await job_store.get_job(svc.db, tenant_id, job_id)
    if found is None:
        return
    job, result = found.job, found.result
    if job.status not in ("succeeded", "failed"):
        yield _frame("0-1", "status", {"status": job.status})
        return
    if after != "0-0":
        return  # a resumed client already saw the end, or nothing newer exists
    yield _frame("0-1", "status", {"status": job.status, "provider": job.provider})
    if result is not None:
        usage = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
        yield _frame(
            "0-2",
            "result",
            {"text": result.text, "finish_reason": result.finish_reason,
             "provider": result.provider, "model": result.model, "usage": usage,
             "cost_usd": usd_text(result.cost_usd)},
        )  # fmt: skip
    else:
        yield _frame("0-2", "error", {"message": job.error or "failed"})
    yield _frame("0-3", TERMINAL, {"status": job.status})
