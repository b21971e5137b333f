"""Memories of users: remember and forget through events; search synchronously.

Remembering and searching embed text, which is billed like a model call: both
are admitted against the key's rate limits and the budgets first (402
`budget_exceeded`, 429), and each embedding call is one `usage.recorded`.

Every read names the tenant of the API key and the user of the request; a
memory of another tenant is "not found", never "forbidden".
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from infra.db import memories as memory_rows
from infra.embeddings.metering import embedding_usage
from infra.errors import PermanentError, TransientError
from infra.providers.tokens import estimate_texts
from infra.vectors import base as vectors
from producers.ingress.admission import admit_billable, release_billable
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.scope import acting_user, visible
from producers.ingress.state import Services, Svc
from schemas import memory as memory_events
from schemas import topics
from schemas.ids import uuid7
from schemas.jobs import USAGE_RECORDED

router = APIRouter(prefix="/v1/memories", tags=["memories"])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {}}}}


@router.post("", status_code=202, response_model=memory_events.MemoryAccepted, openapi_extra=_BODY)
async def remember(
    body: Annotated[memory_events.MemoryCreate, Depends(json_body(memory_events.MemoryCreate))],
    caller: Authenticated,
    svc: Svc,
    request: Request,
) -> memory_events.MemoryAccepted:
    memory_id = uuid7()
    user_id = acting_user(caller, body.user_id)
    # Its embedding is billed to this key: reserved now, settled by the memory group's usage.
    await _admit(request, caller, svc, memory_id, body.text, user_id)
    try:
        await _store(svc, caller, memory_id, user_id, body)
    except BaseException:
        await release_billable(request, caller, memory_id)
        raise
    url = f"{str(request.base_url).rstrip('/')}/v1/memories/{memory_id}"
    return memory_events.MemoryAccepted(id=memory_id, status="pending", url=url)


async def _store(
    svc: Services,
    caller: Caller,
    memory_id: uuid.UUID,
    user_id: str,
    body: memory_events.MemoryCreate,
) -> None:
    await memory_rows.insert_pending(
        svc.db, caller.tenant_id, memory_id, user_id, body.text, dict(body.metadata)
    )
    command = memory_events.Remember(
        memory_id=memory_id,
        user_id=user_id,
        text=body.text,
        metadata=body.metadata,
        api_key_id=caller.key_id,
    )
    try:
        await _publish(svc, caller, user_id, memory_events.MEMORY_REMEMBER, command)
    except ApiError:
        await memory_rows.delete_pending(svc.db, memory_id)
        raise


@router.get("", response_model=memory_events.MemoryList)
async def list_memories(
    caller: Authenticated,
    svc: Svc,
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> memory_events.MemoryList:
    user = acting_user(caller, user_id)
    found = await memory_rows.list_memories(svc.db, caller.tenant_id, user, limit)
    return memory_events.MemoryList(data=[_view(row) for row in found])


@router.get("/{memory_id}", response_model=memory_events.MemoryView)
async def get_memory(
    memory_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> memory_events.MemoryView:
    return _view(await _existing(svc, caller, memory_id))


@router.delete("/{memory_id}", status_code=202)
async def forget(memory_id: uuid.UUID, caller: Authenticated, svc: Svc) -> dict[str, str]:
    row = await _existing(svc, caller, memory_id)
    command = memory_events.Forget(memory_id=memory_id, user_id=row.user_id)
    await _publish(svc, caller, row.user_id, memory_events.MEMORY_FORGET, command)
    return {"id": str(memory_id), "status": "deleting"}


@router.delete("", status_code=202)
async def forget_user(
    caller: Authenticated,
    svc: Svc,
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    user = acting_user(caller, user_id)
    _, destroyed = await forget_memories_of(svc, caller, user)
    return {"user_id": user, "status": "deleting", "key_destroyed": destroyed}


async def forget_memories_of(svc: Services, caller: Caller, user: str) -> tuple[uuid.UUID, bool]:
    """Forget every memory of the user (memory.forget_user, in clear: it carries no text),
    then destroy the user's data key, so every sealed copy of their events (memories, jobs,
    conversations) is unreadable at once. The cut-off id, and whether a key was destroyed."""
    # Everything remembered before now: ids are time-ordered, so the cut-off is an id.
    command = memory_events.ForgetUser(user_id=user, before=uuid7())
    await _publish(svc, caller, user, memory_events.MEMORY_FORGET_USER, command)
    sealer = svc.publisher.sealer
    destroyed = sealer is not None and await sealer.keys.destroy(caller.tenant_id, user)
    return command.before, destroyed


@router.post("/search", response_model=memory_events.MemorySearchResult, openapi_extra=_BODY)
async def search(
    body: Annotated[memory_events.MemorySearch, Depends(json_body(memory_events.MemorySearch))],
    caller: Authenticated,
    svc: Svc,
    request: Request,
) -> memory_events.MemorySearchResult:
    user = acting_user(caller, body.user_id)
    if svc.memory is None:
        raise ApiError(503, "unavailable", "memory search is not configured")
    started = time.perf_counter()
    # The query's embedding is billed like a model call: admitted, then recorded.
    search_id = uuid7()
    await _admit(request, caller, svc, search_id, body.query, user)
    try:
        [vector] = await svc.memory.embedder.embed([body.query])
        await _record_search(svc, caller, search_id, body.query, user)
        model = svc.memory.embedder.model
        query = vectors.Query(caller.tenant_id, user, vector, model, body.top_k, body.filter)
        hits = await svc.memory.store.search(query)
    except BaseException as exc:
        await release_billable(request, caller, search_id)
        if isinstance(exc, TransientError):
            raise unavailable("memory search", exc) from exc
        if isinstance(exc, PermanentError):
            raise ApiError(422, "invalid_request", str(exc)) from exc
        raise
    return memory_events.MemorySearchResult(
        data=[
            memory_events.MemoryHit(
                memory_id=h.memory_id,
                chunk=h.chunk,
                text=h.text,
                score=h.score,
                metadata=h.metadata,
            )
            for h in hits
        ],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _embedding_model(svc: Services) -> str:
    return svc.memory.embedder.model if svc.memory else svc.settings.memory_embedding_model


async def _admit(
    request: Request, caller: Caller, svc: Services, hold_id: uuid.UUID, text: str, user_id: str
) -> None:
    """The rate limits and budgets, as for a model call: 429, or 402 `budget_exceeded`."""
    await admit_billable(
        request,
        caller,
        model=_embedding_model(svc),
        input_tokens=estimate_texts([text]),
        max_output_tokens=0,
        hold_id=hold_id,
        user_id=user_id,
    )


async def _record_search(
    svc: Services, caller: Caller, search_id: uuid.UUID, query: str, user_id: str
) -> None:
    usage = embedding_usage(
        search_id,
        [query],
        purpose="search",
        provider=svc.settings.memory_embedder,
        model=_embedding_model(svc),
        prices=svc.prices,
        api_key_id=caller.key_id,
        user_id=user_id,
    )
    envelope = caller.event(USAGE_RECORDED, search_id, usage)
    try:
        await svc.publisher.publish(topics.USAGE_RECORDED.name, envelope)
    except TransientError as exc:
        raise unavailable("recording the search's usage", exc) from exc


async def _existing(svc: Services, caller: Caller, memory_id: uuid.UUID) -> memory_rows.MemoryRow:
    row = await memory_rows.get_memory(svc.db, caller.tenant_id, memory_id)
    if row is None or row.status == "deleted" or not visible(caller, row.user_id):
        raise ApiError(404, "not_found", f"no memory {memory_id}")
    return row


async def _publish(svc: Services, caller: Caller, user_id: str, type_: str, payload: Any) -> None:
    envelope = caller.event(type_, memory_events.user_key(caller.tenant_id, user_id), payload)
    try:
        await svc.publisher.publish(topics.MEMORY_COMMANDS.name, envelope)
    except TransientError as exc:
        raise unavailable("the event log", exc) from exc


def _view(row: memory_rows.MemoryRow) -> memory_events.MemoryView:
    return memory_events.MemoryView.model_validate(row, from_attributes=True)
