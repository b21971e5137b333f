"""Memories of users: remember and forget through events; search synchronously.

Every read names the tenant of the API key and the user of the request; a
memory of another tenant is "not found", never "forbidden".
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from infra.db import memories as memory_rows
from infra.db.tenants import KeyOwner
from infra.errors import PermanentError, TransientError
from producers.ingress.auth import authenticate
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError, unavailable
from producers.ingress.state import Services, services_dependency
from schemas import memory as ev
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7

router = APIRouter(prefix="/v1/memories", tags=["memories"])

Owner = Annotated[KeyOwner, Depends(authenticate)]
Svc = Annotated[Services, Depends(services_dependency)]
_BODY = {"requestBody": {"required": True, "content": {"application/json": {}}}}


@router.post("", status_code=202, response_model=ev.MemoryAccepted, openapi_extra=_BODY)
async def remember(
    body: Annotated[ev.MemoryCreate, Depends(json_body(ev.MemoryCreate))],
    owner: Owner,
    svc: Svc,
    request: Request,
) -> ev.MemoryAccepted:
    memory_id = uuid7()
    await memory_rows.insert_pending(
        svc.db, owner.tenant_id, memory_id, body.user_id, body.text, dict(body.metadata)
    )
    command = ev.Remember(
        memory_id=memory_id, user_id=body.user_id, text=body.text, metadata=body.metadata
    )
    try:
        await _publish(svc, owner, body.user_id, ev.MEMORY_REMEMBER, command)
    except ApiError:
        await memory_rows.delete_pending(svc.db, memory_id)
        raise
    url = f"{str(request.base_url).rstrip('/')}/v1/memories/{memory_id}"
    return ev.MemoryAccepted(id=memory_id, status="pending", url=url)


@router.get("", response_model=ev.MemoryList)
async def list_memories(
    owner: Owner,
    svc: Svc,
    user_id: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ev.MemoryList:
    found = await memory_rows.list_memories(svc.db, owner.tenant_id, user_id, limit)
    return ev.MemoryList(data=[_view(row) for row in found])


@router.get("/{memory_id}", response_model=ev.MemoryView)
async def get_memory(memory_id: uuid.UUID, owner: Owner, svc: Svc) -> ev.MemoryView:
    return _view(await _existing(svc, owner, memory_id))


@router.delete("/{memory_id}", status_code=202)
async def forget(memory_id: uuid.UUID, owner: Owner, svc: Svc) -> dict[str, str]:
    row = await _existing(svc, owner, memory_id)
    command = ev.Forget(memory_id=memory_id, user_id=row.user_id)
    await _publish(svc, owner, row.user_id, ev.MEMORY_FORGET, command)
    return {"id": str(memory_id), "status": "deleting"}


@router.delete("", status_code=202)
async def forget_user(
    owner: Owner, svc: Svc, user_id: Annotated[str, Query(min_length=1, max_length=200)]
) -> dict[str, str]:
    # Everything remembered before now: ids are time-ordered, so the cut-off is an id.
    command = ev.ForgetUser(user_id=user_id, before=uuid7())
    await _publish(svc, owner, user_id, ev.MEMORY_FORGET_USER, command)
    return {"user_id": user_id, "status": "deleting"}


@router.post("/search", response_model=ev.MemorySearchResult, openapi_extra=_BODY)
async def search(
    body: Annotated[ev.MemorySearch, Depends(json_body(ev.MemorySearch))],
    owner: Owner,
    svc: Svc,
) -> ev.MemorySearchResult:
    if svc.memory is None:
        raise ApiError(503, "unavailable", "memory search is not configured")
    started = time.perf_counter()
    try:
        [vector] = await svc.memory.embedder.embed([body.query])
        hits = await svc.memory.store.search(
            owner.tenant_id, body.user_id, vector,
            model=svc.memory.embedder.model, top_k=body.top_k, filter=body.filter,
        )  # fmt: skip
    except TransientError as exc:
        raise unavailable("memory search", exc) from exc
    except PermanentError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    return ev.MemorySearchResult(
        data=[
            ev.MemoryHit(
                memory_id=h.memory_id, chunk=h.chunk, text=h.text, score=h.score,
                metadata=h.metadata,
            )
            for h in hits
        ],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )  # fmt: skip


async def _existing(svc: Services, owner: KeyOwner, memory_id: uuid.UUID) -> memory_rows.MemoryRow:
    row = await memory_rows.get_memory(svc.db, owner.tenant_id, memory_id)
    if row is None or row.status == "deleted":
        raise ApiError(404, "not_found", f"no memory {memory_id}")
    return row


async def _publish(svc: Services, owner: KeyOwner, user_id: str, type_: str, payload: Any) -> None:
    envelope = Envelope[Any](
        type=type_,
        tenant_id=owner.tenant_id,
        actor=Actor(kind="api_key", id=str(owner.key_id)),
        correlation_id=ev.user_key(owner.tenant_id, user_id),
        payload=payload,
    )
    try:
        await svc.publisher.publish(topics.MEMORY_COMMANDS.name, envelope)
    except TransientError as exc:
        raise unavailable("the event log", exc) from exc


def _view(row: memory_rows.MemoryRow) -> ev.MemoryView:
    return ev.MemoryView(
        id=row.id,
        user_id=row.user_id,
        text=row.text,
        metadata=row.metadata,
        status=row.status,
        error=row.error,
        chunks=row.chunks,
        embedding_model=row.embedding_model,
        embedding_dim=row.embedding_dim,
        created_at=row.created_at,
        stored_at=row.stored_at,
    )
