"""Announcing an episode: `alert.fired` / `alert.resolved` on alerts.events (which the
notifications group delivers to the tenant's webhook subscriptions of `alert.*`), and a
connector action for each Slack or email channel of the rule.

Every id derives from the episode's: the fired event's id is the episode id, the resolved
one's derives from it, and each channel's action job from the event. An evaluator that
stopped between opening an episode and marking it sent announces it again on its next pass
under the same ids, and the consumers drop the second (the notifications group's messages
and the action jobs are keyed by them). A channel's action goes through the integrations
group: retried there, and a failure ends as `integration.action.failed` on the job, never
silently.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from infra.db import actions as action_store
from infra.db import alerts as store
from infra.db import jobs as job_store
from infra.db.alerts import AlertEpisode, AlertRule
from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from schemas import alerts, topics
from schemas import integrations as integration_events
from schemas.envelope import Actor, Envelope
from schemas.ids import derived_id

log = logging.getLogger(__name__)

GROUP = "alerts"
SYSTEM = Actor(kind="system", id=GROUP)
ACTIONS = {"slack": "post_message", "email": "send_email"}


@dataclass(frozen=True)
class Outbox:
    db: Database
    publisher: Publisher


def event_of(rule: AlertRule, episode: AlertEpisode, which: str) -> Envelope[alerts.AlertEvent]:
    fired = which == "fired"
    return Envelope[alerts.AlertEvent](
        id=episode.id if fired else derived_id(episode.id, "resolved"),
        type=alerts.ALERT_FIRED if fired else alerts.ALERT_RESOLVED,
        tenant_id=rule.tenant_id,
        actor=SYSTEM,
        correlation_id=rule.id,
        occurred_at=episode.opened_at if fired else (episode.resolved_at or episode.opened_at),
        payload=alerts.AlertEvent(
            alert_id=episode.id,
            rule_id=rule.id,
            name=rule.name,
            kind=rule.kind,
            state="firing" if fired else "resolved",
            params=rule.params,
            value=episode.value,
            threshold=episode.threshold,
            opened_at=episode.opened_at,
            resolved_at=None if fired else episode.resolved_at,
        ),
    )


async def send_unsent(rule: AlertRule, outbox: Outbox) -> int:
    """Announce what of the rule's episodes has not gone out; how many events went."""
    sent = 0
    for episode in await store.unsent_episodes(outbox.db, rule.id):
        for which in ("fired", "resolved"):
            if which == "fired" and episode.fired_sent:
                continue
            if which == "resolved" and (episode.state != "resolved" or episode.resolved_sent):
                continue
            event = event_of(rule, episode, which)
            await outbox.publisher.publish(topics.ALERTS_EVENTS.name, event)
            for index, channel in enumerate(rule.channels):
                if channel.get("kind") in ACTIONS:
                    await _to_channel(rule, event, index, channel, outbox)
            await store.mark_sent(outbox.db, episode.id, which)
            sent += 1
    return sent


def message(event: alerts.AlertEvent) -> str:
    what = "FIRING" if event.state == "firing" else "RESOLVED"
    since = event.opened_at.isoformat(timespec="seconds")
    return (
        f"[{what}] {event.name} ({event.kind}): {event.value:.4g} against threshold "
        f"{event.threshold:.4g}, since {since}"
    )


def _params(channel: dict[str, Any], event: alerts.AlertEvent) -> dict[str, Any]:
    text = message(event)
    if channel["kind"] == "slack":
        return {"channel": channel["channel"], "text": text}
    state = "firing" if event.state == "firing" else "resolved"
    return {"to": channel["to"], "subject": f"Alert {state}: {event.name}"[:900], "text": text}


async def _to_channel(
    rule: AlertRule,
    event: Envelope[alerts.AlertEvent],
    index: int,
    channel: dict[str, Any],
    outbox: Outbox,
) -> None:
    """The channel's connector action, as a job of the tenant's (GET /v1/jobs shows it)."""
    connection_id = uuid.UUID(str(channel["connection_id"]))
    connection = await action_store.get_connection(outbox.db, rule.tenant_id, connection_id)
    if connection is None:
        log.warning("alert rule %s: connection %s is gone; channel skipped", rule.id, connection_id)
        return
    job_id = derived_id(event.id, f"alert-channel:{index}")
    payload = integration_events.ActionRequested(
        job_id=job_id,
        connection_id=connection_id,
        connector=connection.connector,
        action=ACTIONS[channel["kind"]],
        params=_params(channel, event.payload),
    )
    request = Envelope[integration_events.ActionRequested](
        id=derived_id(job_id, "action-request"),
        type=integration_events.ACTION_REQUESTED,
        tenant_id=rule.tenant_id,
        actor=SYSTEM,
        correlation_id=job_id,
        causation_id=event.id,
        payload=payload,
    )
    stored, _ = await job_store.insert_job(
        outbox.db,
        action_store.action_job(
            job_id=job_id,
            tenant_id=rule.tenant_id,
            api_key_id=None,
            connector=connection.connector,
            action=payload.action,
            request=payload.model_dump(mode="json", include={"connection_id", "action", "params"}),
            event_id=request.id,
            idempotency_key=f"alert:{event.id}:{index}",
        ),
    )
    if stored.published_at is None:
        await outbox.publisher.publish(topics.INTEGRATION_ACTION_REQUESTED.name, request)
        await job_store.mark_published(outbox.db, stored.id)
