"""Webhook endpoints, delivery dedupe, rules and rule runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.engine import Database
from infra.db.integration_models import Rule, RuleRun, WebhookDelivery, WebhookEndpoint
from infra.db.models import utcnow


def endpoint_context(endpoint_id: uuid.UUID, tenant_id: uuid.UUID) -> bytes:
    """Associated data of an endpoint's sealed secret: it opens on this row only."""
    return b"webhook-endpoint:" + endpoint_id.bytes + tenant_id.bytes


async def add_endpoint(db: Database, endpoint: WebhookEndpoint) -> None:
    await db.add(endpoint)


async def get_endpoint(
    db: Database, endpoint_id: uuid.UUID, tenant_id: uuid.UUID | None = None
) -> WebhookEndpoint | None:
    """The endpoint; with `tenant_id`, only if it is that tenant's (read behind the wall).

    A delivery to /hooks/{id} names no tenant: it finds its endpoint by id alone.
    """
    return await db.get(WebhookEndpoint, endpoint_id, tenant_id)


async def record_delivery(
    db: Database, endpoint_id: uuid.UUID, delivery_ids: Sequence[str], event_id: uuid.UUID
) -> bool:
    """False if any of a delivery's dedupe keys was already published for the endpoint."""
    async with db.transaction() as session:
        await session.execute(
            insert(WebhookDelivery)
            .values(
                [
                    {"endpoint_id": endpoint_id, "delivery_id": key, "event_id": event_id}
                    for key in delivery_ids
                ]
            )
            .on_conflict_do_nothing()
        )
        published = (
            await session.execute(
                select(WebhookDelivery.published_at).where(
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.delivery_id.in_(delivery_ids),
                )
            )
        ).scalars()
        return all(at is None for at in published)


async def mark_delivery_published(
    db: Database, endpoint_id: uuid.UUID, delivery_ids: Sequence[str]
) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.delivery_id.in_(delivery_ids),
            )
            .values(published_at=utcnow())
        )


async def add_rule(db: Database, rule: Rule) -> None:
    await db.add(rule)


async def rules_for(db: Database, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> list[Rule]:
    async with db.session() as session:
        found = await session.execute(
            select(Rule)
            .where(Rule.tenant_id == tenant_id, Rule.endpoint_id == endpoint_id)
            .order_by(Rule.id)
        )
        return list(found.scalars())


async def save_rule_run(db: Database, run: RuleRun) -> None:
    """Idempotent: a redelivered webhook finds its run already there."""
    values: dict[str, Any] = run.model_dump()
    values.pop("created_at", None)
    async with db.transaction() as session:
        await session.execute(insert(RuleRun).values(**values).on_conflict_do_nothing())


async def get_rule_run(db: Database, job_id: uuid.UUID) -> RuleRun | None:
    async with db.session() as session:
        return await session.get(RuleRun, job_id)
