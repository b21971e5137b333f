"""POST /hooks/{endpoint_id}: verify, dedupe, publish `webhook.received`, answer at once.

Nothing is published for an unknown endpoint (404), a body over the limit
(413) or a bad, missing or stale signature (401).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from infra.db import webhooks as store
from infra.db.integration_models import WebhookEndpoint
from infra.db.sealed import opened
from infra.errors import TransientError
from infra.vault import Vault
from producers.ingress.body import allow_body
from producers.ingress.errors import ApiError
from producers.ingress.signatures import SignatureError, verify
from producers.ingress.state import Services, Svc, vault
from schemas import integrations as integration_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import derived_id
from schemas.request import nul_at

router = APIRouter(tags=["webhooks"])

SecretBox = Annotated[Vault, Depends(vault)]

# Headers that could carry a credential of ours are not kept in the event.
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# Schemes that sign neither a timestamp nor the delivery id: deduplicated on the body as well.
BODY_DEDUPED = frozenset({"github", "hmac"})


@router.post("/hooks/{endpoint_id}", status_code=202)
async def receive(endpoint_id: str, request: Request, svc: Svc, box: SecretBox) -> JSONResponse:
    endpoint = await _endpoint(svc, endpoint_id)
    allow_body(request, svc.settings.webhook_max_body_bytes)
    body = await request.body()
    secret = opened(box, endpoint).decode()
    try:
        verify(
            endpoint.source,
            secret,
            request.headers,
            body,
            now=time.time(),
            signature_header=endpoint.signature_header,
        )
    except SignatureError as exc:
        raise ApiError(401, "invalid_signature", str(exc)) from exc
    payload = _json_object(body)
    where = nul_at(payload)
    if where is not None:
        # Postgres stores no NUL: the delivery, its rule runs and jobs would fail later.
        field = f"payload{where}"
        message = f"invalid field {field}: a NUL character (\\u0000) is not allowed"
        raise ApiError(422, "invalid_request", message, field=field)
    if endpoint.source == "slack" and payload and payload.get("type") == "url_verification":
        return JSONResponse({"challenge": payload.get("challenge")}, 200)
    delivery_id = _delivery_id(endpoint, request, payload, body)
    keys = _dedupe_keys(endpoint.source, delivery_id, body)
    event_id = derived_id(endpoint.id, f"delivery:{keys[-1]}")
    if not await store.record_delivery(svc.db, endpoint.id, keys, event_id):
        return JSONResponse({"status": "duplicate", "id": str(event_id)}, 200)
    envelope = Envelope[Any](
        id=event_id,
        type=integration_events.WEBHOOK_RECEIVED,
        tenant_id=endpoint.tenant_id,
        actor=Actor(kind="webhook", id=str(endpoint.id)),
        correlation_id=event_id,
        payload=integration_events.WebhookReceived(
            endpoint_id=endpoint.id,
            source=endpoint.source,
            delivery_id=delivery_id,
            event_type=_event_type(endpoint.source, request, payload),
            headers={k: v for k, v in request.headers.items() if k not in DROPPED_HEADERS},
            body=base64.b64encode(body).decode(),
            payload=payload,
        ),
    )
    try:
        await svc.publisher.publish(topics.WEBHOOK_RECEIVED.name, envelope)
    except TransientError as exc:
        # Not marked published: the source's retry publishes it under the same id.
        raise ApiError(503, "unavailable", "try again", {"Retry-After": "1"}) from exc
    await store.mark_delivery_published(svc.db, endpoint.id, keys)
    return JSONResponse({"status": "accepted", "id": str(event_id)}, 202)


async def _endpoint(svc: Services, endpoint_id: str) -> WebhookEndpoint:
    try:
        parsed = uuid.UUID(endpoint_id)
    except ValueError:
        parsed = None
    endpoint = await store.get_endpoint(svc.db, parsed) if parsed else None
    if endpoint is None:
        raise ApiError(404, "not_found", "no such webhook endpoint")
    return endpoint


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _delivery_id(
    endpoint: WebhookEndpoint, request: Request, payload: dict[str, Any] | None, body: bytes
) -> str:
    """The source's own id for the delivery: retries of one delivery carry the same."""
    headers = request.headers
    found: Any = None
    if endpoint.source == "github":
        found = headers.get("x-github-delivery")
    elif endpoint.source == "standard":
        found = headers.get("webhook-id")
    elif endpoint.source in ("stripe", "slack") and payload:
        found = payload.get("id") if endpoint.source == "stripe" else payload.get("event_id")
    elif endpoint.source == "hmac":
        found = headers.get("x-delivery-id") or headers.get("x-request-id")
    if found:
        return str(found)[:300]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _dedupe_keys(source: str, delivery_id: str, body: bytes) -> list[str]:
    """What makes a delivery a duplicate: its id, and for some schemes its body too.

    GitHub's and the generic HMAC scheme's signatures cover the body only: the
    delivery id (and GitHub's event type) are unsigned headers and no timestamp
    is signed, so a captured delivery could be replayed for ever under fresh
    ids. Their body's hash is a dedupe key as well, and the event id derives from
    it, so a replay answers like the duplicate it is. Stripe, Slack and Standard
    Webhooks sign a timestamp (checked against a five-minute window) and their
    id is signed or in the signed body: their id alone is the key.
    """
    body_key = "sha256:" + hashlib.sha256(body).hexdigest()
    if source not in BODY_DEDUPED or delivery_id == body_key:
        return [delivery_id]
    return [delivery_id, body_key]


def _event_type(source: str, request: Request, payload: dict[str, Any] | None) -> str:
    data = payload or {}
    if source == "github":
        name = request.headers.get("x-github-event", "unknown")
        action = data.get("action")
        return f"{name}.{action}" if isinstance(action, str) else name
    if source == "slack" and data.get("type") == "event_callback":
        return str((data.get("event") or {}).get("type", "event_callback"))
    return str(data.get("type") or data.get("event") or "unknown")[:200]
