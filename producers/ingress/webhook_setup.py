"""POST /v1/webhook-endpoints and POST /v1/rules: what a tenant receives and what it does."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from infra.connectors import CATALOG
from infra.db import actions as action_store
from infra.db import webhooks as store
from infra.db.integration_models import Rule, WebhookEndpoint
from infra.db.sealed import seal_into
from infra.errors import ModelNotPriced, PermanentError
from infra.vault import Vault
from producers.ingress.actions import invalid
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.openai_errors import model_refused
from producers.ingress.state import Services, Svc, vault
from schemas import integrations as integration_events
from schemas.ids import uuid7

router = APIRouter(tags=["webhooks"])

SecretBox = Annotated[Vault, Depends(vault)]

# Slack and Stripe issue the signing secret themselves; the tenant copies it here.
VENDOR_ISSUED = frozenset({"slack", "stripe"})


@router.post(
    "/v1/webhook-endpoints",
    status_code=201,
    response_model=integration_events.WebhookEndpointCreated,
)
async def create_endpoint(
    body: Annotated[
        integration_events.WebhookEndpointCreate,
        Depends(json_body(integration_events.WebhookEndpointCreate)),
    ],
    caller: Authenticated,
    svc: Svc,
    box: SecretBox,
    request: Request,
) -> integration_events.WebhookEndpointCreated:
    generated = None
    secret = body.secret
    if secret is None:
        if body.source in VENDOR_ISSUED:
            raise invalid("secret", f"{body.source} issues the signing secret: pass it here")
        # Standard Webhooks' format (whsec_ + base64 key) works for every HMAC source.
        secret = generated = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    endpoint = WebhookEndpoint(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        source=body.source,
        signature_header=body.signature_header,
        secret_key_id="",  # sealed next: the secret is bound to the row's id and tenant
        secret_sealed=b"",
    )
    seal_into(box, endpoint, secret.encode())
    await store.add_endpoint(svc.db, endpoint)
    base = str(request.base_url).rstrip("/")
    return integration_events.WebhookEndpointCreated(
        id=endpoint.id, url=f"{base}/hooks/{endpoint.id}", source=body.source, secret=generated
    )


@router.post("/v1/rules", status_code=201, response_model=integration_events.RuleView)
async def create_rule(
    body: Annotated[
        integration_events.RuleCreate, Depends(json_body(integration_events.RuleCreate))
    ],
    caller: Authenticated,
    svc: Svc,
) -> integration_events.RuleView:
    endpoint = await store.get_endpoint(svc.db, body.endpoint_id, caller.tenant_id)
    if endpoint is None:
        raise invalid("endpoint_id", "no such webhook endpoint")
    await check_templates(svc, caller.tenant_id, body.job, body.action)
    rule = Rule(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        endpoint_id=body.endpoint_id,
        event_type=body.event_type,
        filter=dict(body.filter),
        job=body.job.model_dump(mode="json") if body.job else None,
        action=body.action.model_dump(mode="json") if body.action else None,
    )
    await store.add_rule(svc.db, rule)
    return integration_events.RuleView.model_validate(rule, from_attributes=True)


async def check_templates(
    svc: Services,
    tenant_id: uuid.UUID,
    job: integration_events.RuleJob | None,
    action: integration_events.RuleAction | None,
    prefix: str = "",
) -> None:
    """What a rule or a schedule runs can run: its model routed and priced, its
    connection the tenant's and its action one the connector has (422 naming the field)."""
    if job is not None:
        try:  # the jobs it starts are billed: their model must be routed and priced
            svc.catalog.check(job.model)
        except ModelNotPriced as exc:
            raise model_refused(exc, f"{prefix}job.model") from exc
        except PermanentError as exc:
            raise invalid(f"{prefix}job.model", str(exc)) from exc
    if action is not None:
        connection = await action_store.get_connection(svc.db, tenant_id, action.connection_id)
        if connection is None:
            raise invalid(f"{prefix}action.connection_id", "no such connection")
        if action.action not in CATALOG[connection.connector].actions:
            raise invalid(f"{prefix}action.action", f"{connection.connector} has no such action")
