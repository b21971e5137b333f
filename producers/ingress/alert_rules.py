"""Alerts: /v1/alert-rules (the tenant's administration) and /v1/alerts (their episodes).

A rule's parameters are checked against its kind (schemas/alerts.py, `check_rule`): a
parameter the kind does not take, or one it needs and lacks, is a 422 naming it. A Slack or
email channel names a connection of the tenant's of that connector. The alerts group
evaluates the rules; the episodes it opens are listed here.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from infra.db import actions as action_store
from infra.db import alerts as store
from infra.db.alerts import AlertEpisode, AlertRule
from producers.ingress.actions import invalid
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from producers.ingress.state import Svc
from schemas import alerts as api
from schemas.ids import uuid7

router = APIRouter(tags=["alerts"])
PREFIX = "/v1/alert-rules"


def view(row: AlertRule) -> api.AlertRuleView:
    return api.AlertRuleView(
        id=row.id,
        name=row.name,
        kind=row.kind,
        params=row.params,
        channels=row.channels,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def episode_view(row: AlertEpisode) -> api.AlertView:
    return api.AlertView(
        id=row.id,
        rule_id=row.rule_id,
        state=row.state,
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        value=row.value,
        threshold=row.threshold,
    )


async def _checked(
    svc: Svc, tenant_id: uuid.UUID, kind: str, params: dict[str, Any], channels: list[api.Channel]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The rule's parameters with their defaults, and its channels; 422 naming a bad one."""
    try:
        merged = api.check_rule(kind, params, channels)
    except api.RuleProblem as problem:
        raise invalid(problem.field, problem.message) from None
    for index, channel in enumerate(channels):
        if channel.connection_id is None:
            continue
        found = await action_store.get_connection(svc.db, tenant_id, channel.connection_id)
        if found is None or found.connector != channel.kind:
            field = f"channels[{index}].connection_id"
            raise invalid(field, f"no {channel.kind} connection of this tenant has this id")
    return merged, [c.model_dump(mode="json", exclude_none=True) for c in channels]


async def _found(svc: Svc, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> AlertRule:
    row = await store.get_rule(svc.db, tenant_id, rule_id)
    if row is None:
        raise ApiError(404, "not_found", "no such alert rule")
    return row


@router.post(PREFIX, status_code=201, response_model=api.AlertRuleView)
async def create_rule(
    body: Annotated[api.AlertRuleCreate, Depends(json_body(api.AlertRuleCreate))],
    caller: Authenticated,
    svc: Svc,
) -> api.AlertRuleView:
    params = body.model_dump(include=set(api.PARAMS))
    merged, channels = await _checked(svc, caller.tenant_id, body.kind, params, body.channels)
    row = AlertRule(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        name=body.name,
        kind=body.kind,
        params=merged,
        channels=channels,
        enabled=body.enabled,
    )
    await svc.db.add(row)
    return view(row)


@router.get(PREFIX, response_model=api.AlertRuleList)
async def list_rules(
    caller: Authenticated,
    svc: Svc,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> api.AlertRuleList:
    """The tenant's rules, newest first; `after` is the last id of the previous page."""
    rows = await store.list_rules(svc.db, caller.tenant_id, limit=limit + 1, after=after)
    data = [view(r) for r in rows[:limit]]
    return api.AlertRuleList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


@router.get(PREFIX + "/{rule_id}", response_model=api.AlertRuleView)
async def get_rule(rule_id: uuid.UUID, caller: Authenticated, svc: Svc) -> api.AlertRuleView:
    return view(await _found(svc, caller.tenant_id, rule_id))


@router.patch(PREFIX + "/{rule_id}", response_model=api.AlertRuleView)
async def update_rule(
    rule_id: uuid.UUID,
    body: Annotated[api.AlertRuleUpdate, Depends(json_body(api.AlertRuleUpdate))],
    caller: Authenticated,
    svc: Svc,
) -> api.AlertRuleView:
    """Changes the parameters given (of the rule's kind), the name, channels, `enabled`;
    a firing episode resolves when the changed rule stops holding."""
    row = await _found(svc, caller.tenant_id, rule_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "channels", "enabled"):
        if name in changes and changes[name] is None:
            raise invalid(name, "may not be null")
    given = {k: v for k, v in changes.items() if k in api.PARAMS}
    params = {**row.params, **given}
    channels = body.channels if body.channels is not None else _channels(row)
    merged, channel_rows = await _checked(svc, caller.tenant_id, row.kind, params, channels)
    values: dict[str, Any] = {"params": merged, "channels": channel_rows}
    for name in ("name", "enabled"):
        if name in changes:
            values[name] = changes[name]
    updated = await store.update_rule(svc.db, caller.tenant_id, rule_id, values)
    if updated is None:
        raise ApiError(404, "not_found", "no such alert rule")
    return view(updated)


def _channels(row: AlertRule) -> list[api.Channel]:
    return [api.Channel.model_validate(c) for c in row.channels]


@router.delete(PREFIX + "/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, caller: Authenticated, svc: Svc) -> Response:
    """The rule and its episodes go."""
    if not await store.delete_rule(svc.db, caller.tenant_id, rule_id):
        raise ApiError(404, "not_found", "no such alert rule")
    return Response(status_code=204)


@router.get("/v1/alerts", response_model=api.AlertList)
async def list_alerts(
    caller: Authenticated,
    svc: Svc,
    state: api.EpisodeState | None = None,
    rule_id: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> api.AlertList:
    """The episodes of the tenant's rules, newest first; `state`: firing or resolved."""
    rows = await store.list_episodes(
        svc.db, caller.tenant_id, limit=limit + 1, after=after, state=state, rule_id=rule_id
    )
    data = [episode_view(r) for r in rows[:limit]]
    return api.AlertList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )
