"""The connector catalogue and POST /v1/actions (connections: connections.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from infra.connectors import CATALOG, describe
from infra.db import actions as store
from infra.db import jobs as job_store
from infra.errors import TransientError
from infra.vault import Vault
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from producers.ingress.state import Svc, vault
from schemas import integrations as integration_events
from schemas import topics
from schemas.api import JobAccepted
from schemas.ids import uuid7

router = APIRouter(tags=["actions"])

SecretBox = Annotated[Vault, Depends(vault)]


@router.get("/v1/connectors")
async def list_connectors(_: Authenticated) -> dict[str, Any]:
    return {"connectors": describe()}


@router.post("/v1/actions", status_code=202, response_model=JobAccepted)
async def create_action(
    body: Annotated[
        integration_events.ActionCreate, Depends(json_body(integration_events.ActionCreate))
    ],
    caller: Authenticated,
    svc: Svc,
    request: Request,
) -> JobAccepted:
    connection = await store.get_connection(svc.db, caller.tenant_id, body.connection_id)
    if connection is None:
        if await store.was_deleted(svc.db, caller.tenant_id, body.connection_id):
            raise ApiError(
                409,
                "connection_deleted",
                "the connection was deleted; create a new one",
                field="connection_id",
            )
        raise invalid("connection_id", "no such connection")
    spec = CATALOG[connection.connector].action(body.action)
    if spec is None:
        known = ", ".join(CATALOG[connection.connector].actions)
        raise invalid("action", f"{connection.connector} has no such action; known: {known}")
    params = validated(spec.params, body.params, "params")
    job_id, event_id = uuid7(), uuid7()
    payload = integration_events.ActionRequested(
        job_id=job_id,
        api_key_id=caller.key_id,
        connection_id=connection.id,
        connector=connection.connector,
        action=body.action,
        params=params.model_dump(mode="json", by_alias=True, exclude_none=True),
    )
    row = store.action_job(
        job_id=job_id,
        tenant_id=caller.tenant_id,
        api_key_id=caller.key_id,
        connector=connection.connector,
        action=body.action,
        request=payload.model_dump(mode="json", include={"connection_id", "action", "params"}),
        event_id=event_id,
    )
    await job_store.insert_job(svc.db, row)
    envelope = caller.event(integration_events.ACTION_REQUESTED, job_id, payload, id=event_id)
    try:
        await svc.publisher.publish(topics.INTEGRATION_ACTION_REQUESTED.name, envelope)
    except TransientError as exc:
        await job_store.delete_unpublished(svc.db, job_id)
        raise ApiError(503, "unavailable", "try again", {"Retry-After": "1"}) from exc
    await svc.streams.append(job_id, "status", {"status": "queued"})
    base = str(request.base_url).rstrip("/")
    return JobAccepted(
        id=job_id,
        status="queued",
        url=f"{base}/v1/jobs/{job_id}",
        events_url=f"{base}/v1/jobs/{job_id}/events",
    )


def validated(
    model: type[BaseModel], data: dict[str, Any], field: str, context: Any = None
) -> BaseModel:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join([field, *(str(p) for p in first["loc"])])
        # The message names the field only: a credential's value is never echoed.
        raise invalid(where, first["msg"]) from exc


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", f"invalid field {field}: {message}", field=field)
