"""Outbound webhooks: /v1/webhook-subscriptions (the tenant's administration).

A subscription's signing secret is shown once, when it is made or rotated; a rotation keeps
the previous secret signing beside the new one for `webhook_secret_overlap_s`. Its URL must
pass the outbound address policy here and again at every delivery (at connect).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from infra.connectors.address_policy import AddressPolicy
from infra.db import outbound_webhooks as store
from infra.db.models import utcnow
from infra.db.outbound_webhooks import WebhookSubscription
from infra.db.sealed import opened, seal_into
from infra.webhook_signing import new_secret
from producers.ingress.actions import SecretBox
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from producers.ingress.outbound_urls import check_url
from producers.ingress.state import Svc
from schemas import outbound_webhooks as api
from schemas.ids import uuid7

router = APIRouter(tags=["outbound webhooks"])
PREFIX = "/v1/webhook-subscriptions"


def _policy(request: Request) -> AddressPolicy:
    policy: AddressPolicy = request.app.state.sign_in.policy
    return policy


def view(row: WebhookSubscription, secret: str | None = None) -> api.SubscriptionView:
    return api.SubscriptionView(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        previous_secret_valid_until=row.previous_valid_until,
        created_at=row.created_at,
        secret=secret,
    )


async def _found(svc: Svc, tenant_id: uuid.UUID, subscription_id: uuid.UUID) -> WebhookSubscription:
    row = await store.get_subscription(svc.db, tenant_id, subscription_id)
    if row is None:
        raise ApiError(404, "not_found", "no such webhook subscription")
    return row


@router.post(PREFIX, status_code=201, response_model=api.SubscriptionView)
async def create_subscription(
    body: Annotated[api.SubscriptionCreate, Depends(json_body(api.SubscriptionCreate))],
    caller: Authenticated,
    svc: Svc,
    box: SecretBox,
    request: Request,
) -> api.SubscriptionView:
    await check_url(body.url, _policy(request), "url")
    secret = new_secret()
    row = WebhookSubscription(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        secret_key_id="",  # sealed next: bound to the row's id and tenant
        secret_sealed=b"",
    )
    seal_into(box, row, store.pack_secrets(secret))
    await svc.db.add(row)
    return view(row, secret)


@router.get(PREFIX, response_model=api.SubscriptionList)
async def list_subscriptions(caller: Authenticated, svc: Svc) -> api.SubscriptionList:
    rows = await store.list_subscriptions(svc.db, caller.tenant_id)
    return api.SubscriptionList(data=[view(r) for r in rows])


@router.get(PREFIX + "/{subscription_id}", response_model=api.SubscriptionView)
async def get_subscription(
    subscription_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> api.SubscriptionView:
    return view(await _found(svc, caller.tenant_id, subscription_id))


@router.patch(PREFIX + "/{subscription_id}", response_model=api.SubscriptionView)
async def update_subscription(
    subscription_id: uuid.UUID,
    body: Annotated[api.SubscriptionUpdate, Depends(json_body(api.SubscriptionUpdate))],
    caller: Authenticated,
    svc: Svc,
    request: Request,
) -> api.SubscriptionView:
    await _found(svc, caller.tenant_id, subscription_id)
    values = body.model_dump(exclude_unset=True)
    if values.get("url") is None:
        values.pop("url", None)
    else:
        await check_url(values["url"], _policy(request), "url")
    if values.get("event_types") is None:
        values.pop("event_types", None)
    if values.get("enabled") is None:
        values.pop("enabled", None)
    elif values["enabled"]:
        # Enabled again (by hand, after a disabling): its failure count starts afresh.
        values.update(disabled_reason=None, failing_since=None)
    row = await store.update_subscription(svc.db, caller.tenant_id, subscription_id, values)
    if row is None:
        raise ApiError(404, "not_found", "no such webhook subscription")
    return view(row)


@router.delete(PREFIX + "/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: uuid.UUID, caller: Authenticated, svc: Svc
) -> Response:
    if not await store.delete_subscription(svc.db, caller.tenant_id, subscription_id):
        raise ApiError(404, "not_found", "no such webhook subscription")
    return Response(status_code=204)


@router.post(PREFIX + "/{subscription_id}/rotate-secret", response_model=api.SubscriptionView)
async def rotate_secret(
    subscription_id: uuid.UUID, caller: Authenticated, svc: Svc, box: SecretBox
) -> api.SubscriptionView:
    """A new secret signs from now on; the one before keeps signing beside it (both
    signatures in the header) for the overlap, so receivers can switch without a gap."""
    row = await _found(svc, caller.tenant_id, subscription_id)
    current = store.signing_secrets(opened(box, row), None)[0]
    secret = new_secret()
    seal_into(box, row, store.pack_secrets(secret, current))
    overlap = timedelta(seconds=svc.settings.webhook_secret_overlap_s)
    updated = await store.update_subscription(
        svc.db,
        caller.tenant_id,
        subscription_id,
        {
            "secret_key_id": row.secret_key_id,
            "secret_sealed": row.secret_sealed,
            "previous_valid_until": utcnow() + overlap,
        },
    )
    if updated is None:
        raise ApiError(404, "not_found", "no such webhook subscription")
    return view(updated, secret)


@router.get(PREFIX + "/{subscription_id}/deliveries", response_model=api.DeliveryList)
async def list_deliveries(
    subscription_id: uuid.UUID, caller: Authenticated, svc: Svc, limit: int = 100
) -> api.DeliveryList:
    await _found(svc, caller.tenant_id, subscription_id)
    rows = await store.list_messages(
        svc.db, caller.tenant_id, subscription_id, max(1, min(limit, 1000))
    )
    return api.DeliveryList(
        data=[api.DeliveryView(**{**r, "id": f"msg_{r['id'].hex}"}) for r in rows]
    )


def _message_id(delivery_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=delivery_id.removeprefix("msg_"))
    except ValueError as exc:
        raise ApiError(404, "not_found", "no such delivery") from exc


@router.post(
    PREFIX + "/{subscription_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=api.Redelivered,
)
async def redeliver_one(
    subscription_id: uuid.UUID, delivery_id: str, caller: Authenticated, svc: Svc
) -> api.Redelivered:
    await _found(svc, caller.tenant_id, subscription_id)
    count = await store.redeliver(
        svc.db, caller.tenant_id, subscription_id, message_id=_message_id(delivery_id)
    )
    if not count:
        raise ApiError(404, "not_found", "no such delivery")
    return api.Redelivered(redelivered=count)


@router.post(
    PREFIX + "/{subscription_id}/redeliver", status_code=202, response_model=api.Redelivered
)
async def redeliver_since(
    subscription_id: uuid.UUID,
    body: Annotated[api.RedeliverSince, Depends(json_body(api.RedeliverSince))],
    caller: Authenticated,
    svc: Svc,
) -> api.Redelivered:
    """Every delivery since a time that has not succeeded (failed, or waiting for a retry),
    attempted again now and from the start of the schedule, under its webhook-id."""
    await _found(svc, caller.tenant_id, subscription_id)
    count = await store.redeliver(svc.db, caller.tenant_id, subscription_id, since=body.since)
    return api.Redelivered(redelivered=count)
