"""Alert rules, their episodes and the observations they are evaluated on (migration 0990).

Observations are written by the alerts group, one row per counted event (its id derived
from the event's: a redelivered event counts once); the evaluator reads windows of them.
An episode opens with an INSERT that the partial unique index on firing episodes lets
through once per rule, whatever the number of evaluators.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, delete, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from infra.db.engine import Database
from infra.db.models import timestamp, timestamp_now, utcnow


class AlertRule(SQLModel, table=True):
    __tablename__ = "alert_rules"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    params: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    channels: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    enabled: bool = True
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()


class AlertEpisode(SQLModel, table=True):
    __tablename__ = "alert_episodes"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID
    rule_id: uuid.UUID = Field(foreign_key="alert_rules.id")
    state: str = Field(default="firing", max_length=16)
    opened_at: datetime = timestamp_now()
    resolved_at: datetime | None = timestamp()
    value: float
    threshold: float
    fired_sent: bool = False
    resolved_sent: bool = False


@dataclass(frozen=True)
class Observation:
    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str  # model_call | connector_call | spend | budget | dead_letter
    target: str
    at: datetime
    failed: bool = False
    latency_ms: float | None = None
    amount: Decimal | None = None


# rules -------------------------------------------------------------------------


async def get_rule(db: Database, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> AlertRule | None:
    return await db.get(AlertRule, rule_id, tenant_id)


async def list_rules(
    db: Database, tenant_id: uuid.UUID, *, limit: int, after: uuid.UUID | None = None
) -> list[AlertRule]:
    """A tenant's rules, newest first (ids are uuid7), after the cursor."""
    query = select(AlertRule).where(AlertRule.tenant_id == tenant_id)
    if after is not None:
        query = query.where(AlertRule.id < after)
    async with db.tenant_reads(tenant_id) as session:
        found = await session.execute(query.order_by(AlertRule.id.desc()).limit(limit))
        return list(found.scalars())


async def update_rule(
    db: Database, tenant_id: uuid.UUID, rule_id: uuid.UUID, values: dict[str, Any]
) -> AlertRule | None:
    async with db.transaction() as session:
        found = await session.execute(
            update(AlertRule)
            .where(AlertRule.id == rule_id, AlertRule.tenant_id == tenant_id)
            .values(**values, updated_at=utcnow())
            .returning(AlertRule)
        )
        return found.scalars().first()


async def delete_rule(db: Database, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> bool:
    async with db.transaction() as session:
        done = await session.execute(
            delete(AlertRule).where(AlertRule.id == rule_id, AlertRule.tenant_id == tenant_id)
        )
        return bool(done.rowcount)


async def enabled_rules(db: Database, after: uuid.UUID | None, limit: int) -> list[AlertRule]:
    """The evaluator's read: every tenant's enabled rules, a page at a time by id."""
    query = select(AlertRule).where(AlertRule.enabled.is_(True))
    if after is not None:
        query = query.where(AlertRule.id > after)
    async with db.session() as session:
        found = await session.execute(query.order_by(AlertRule.id).limit(limit))
        return list(found.scalars())


async def disabled_firing(db: Database, limit: int) -> list[tuple[AlertRule, AlertEpisode]]:
    """Rules turned off while firing, with their firing episode: to resolve."""
    async with db.session() as session:
        found = await session.execute(
            select(AlertRule, AlertEpisode)
            .join(AlertEpisode, AlertEpisode.rule_id == AlertRule.id)
            .where(AlertRule.enabled.is_(False), AlertEpisode.state == "firing")
            .limit(limit)
        )
        return [(rule, episode) for rule, episode in found.all()]


# episodes ----------------------------------------------------------------------


async def list_episodes(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    state: str | None = None,
    rule_id: uuid.UUID | None = None,
) -> list[AlertEpisode]:
    """A tenant's episodes, newest first, after the cursor (an episode id)."""
    query = select(AlertEpisode).where(AlertEpisode.tenant_id == tenant_id)
    if state is not None:
        query = query.where(AlertEpisode.state == state)
    if rule_id is not None:
        query = query.where(AlertEpisode.rule_id == rule_id)
    async with db.tenant_reads(tenant_id) as session:
        if after is not None:
            cursor = await session.get(AlertEpisode, after)
            if cursor is None or cursor.tenant_id != tenant_id:
                return []
            query = query.where(
                (AlertEpisode.opened_at < cursor.opened_at)
                | ((AlertEpisode.opened_at == cursor.opened_at) & (AlertEpisode.id < cursor.id))
            )
        order = (AlertEpisode.opened_at.desc(), AlertEpisode.id.desc())
        found = await session.execute(query.order_by(*order).limit(limit))
        return list(found.scalars())


async def firing_episode(db: Database, rule_id: uuid.UUID) -> AlertEpisode | None:
    async with db.session() as session:
        found = await session.execute(
            select(AlertEpisode).where(
                AlertEpisode.rule_id == rule_id, AlertEpisode.state == "firing"
            )
        )
        return found.scalars().first()


async def open_episode(db: Database, episode: AlertEpisode) -> bool:
    """Open the episode; False when the rule has a firing one already (another
    evaluator's, or this one's before a crash)."""
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "INSERT INTO alert_episodes (id, tenant_id, rule_id, state, opened_at, value, "
                "threshold) VALUES (:id, :tenant_id, :rule_id, 'firing', :opened_at, :value, "
                ":threshold) ON CONFLICT DO NOTHING"
            ),
            {
                "id": episode.id,
                "tenant_id": episode.tenant_id,
                "rule_id": episode.rule_id,
                "opened_at": episode.opened_at,
                "value": episode.value,
                "threshold": episode.threshold,
            },
        )
        return bool(done.rowcount)


async def resolve_episode(
    db: Database, episode_id: uuid.UUID, at: datetime, value: float
) -> AlertEpisode | None:
    """Resolve the firing episode; None when it is resolved already (by another evaluator)."""
    async with db.transaction() as session:
        found = await session.execute(
            update(AlertEpisode)
            .where(AlertEpisode.id == episode_id, AlertEpisode.state == "firing")
            .values(state="resolved", resolved_at=at, value=value)
            .returning(AlertEpisode)
        )
        return found.scalars().first()


async def unsent_episodes(db: Database, rule_id: uuid.UUID) -> list[AlertEpisode]:
    """The rule's episodes whose events have not gone out (an evaluator stopped between)."""
    async with db.session() as session:
        found = await session.execute(
            select(AlertEpisode).where(
                AlertEpisode.rule_id == rule_id,
                AlertEpisode.fired_sent.is_(False)
                | ((AlertEpisode.state == "resolved") & AlertEpisode.resolved_sent.is_(False)),
            )
        )
        return list(found.scalars())


async def mark_sent(db: Database, episode_id: uuid.UUID, which: str) -> None:
    column = {"fired": "fired_sent", "resolved": "resolved_sent"}[which]
    async with db.transaction() as session:
        await session.execute(
            update(AlertEpisode).where(AlertEpisode.id == episode_id).values({column: True})
        )


# observations ------------------------------------------------------------------


async def observe(db: Database, observations: Sequence[Observation]) -> int:
    """Record the observations; one already there (a redelivered event) is kept as is."""
    if not observations:
        return 0
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "INSERT INTO alert_observations (id, tenant_id, kind, target, at, failed, "
                "latency_ms, amount) VALUES (:id, :tenant_id, :kind, :target, :at, :failed, "
                ":latency_ms, :amount) ON CONFLICT DO NOTHING"
            ),
            [
                {
                    "id": o.id,
                    "tenant_id": o.tenant_id,
                    "kind": o.kind,
                    "target": o.target[:200],
                    "at": o.at,
                    "failed": o.failed,
                    "latency_ms": o.latency_ms,
                    "amount": o.amount,
                }
                for o in observations
            ],
        )
        return int(done.rowcount or 0)


@dataclass(frozen=True)
class Window:
    total: int
    failed: int
    timed: int  # of them with a latency
    p95_ms: float | None
    amount: Decimal


async def window(
    db: Database,
    tenant_id: uuid.UUID,
    kind: str,
    since: datetime,
    until: datetime,
    target: str | None = None,
    target_at_least: int | None = None,
) -> Window:
    """Counts of one kind of observation in (since, until]: of `target`, or of every target;
    `target_at_least`: only targets that number at least this (a budget crossing's pct)."""
    where = "tenant_id = :tenant AND kind = :kind AND at > :since AND at <= :until"
    args: dict[str, Any] = {"tenant": tenant_id, "kind": kind, "since": since, "until": until}
    if target is not None:
        where += " AND target = :target"
        args["target"] = target
    if target_at_least is not None:
        where += " AND target ~ '^[0-9]+$' AND target::int >= :least"
        args["least"] = target_at_least
    async with db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE failed), count(latency_ms), "
                    "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), "
                    f"coalesce(sum(amount), 0) FROM alert_observations WHERE {where}"
                ),
                args,
            )
        ).one()
    return Window(int(row[0]), int(row[1]), int(row[2]), row[3], Decimal(row[4]))


async def prune_observations(db: Database, before: datetime, limit: int = 10_000) -> int:
    async with db.transaction() as session:
        done = await session.execute(
            text(
                "DELETE FROM alert_observations WHERE id IN (SELECT id FROM alert_observations "
                "WHERE at < :before LIMIT :limit)"
            ),
            {"before": before, "limit": limit},
        )
        return int(done.rowcount or 0)
