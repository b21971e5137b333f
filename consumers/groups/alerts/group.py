"""The alerts group: counts what tenants' alert rules watch, and evaluates them on a timer.

    ai.job.lifecycle      job succeeded / failed, connector action succeeded / failed
    usage.recorded        spend
    usage.budget          budget thresholds crossed
    <every topic>.dlq     dead letters
        -> one observation per event (observing.py)
    every alert_eval_s    -> evaluate every enabled rule (evaluating.py): open an episode
                             and announce `alert.fired`, or resolve it and announce
                             `alert.resolved`, on alerts.events and the rule's channels

Every record of these topics takes the one route (the dead-letter topics carry other groups'
types), and the handler tells them apart. Any number of copies may run: observations are
keyed by their event, and a rule has at most one firing episode (evaluating.py).
"""

from __future__ import annotations

from consumers.groups.alerts.evaluating import Lag, Ports, evaluate
from consumers.groups.alerts.observing import observations
from infra.db import alerts as store
from infra.kafka.group import Group
from infra.kafka.policies import Each
from infra.kafka.routes import ANY, Record
from schemas import topics

__all__ = ["Lag", "Ports", "group"]

TOPICS = [
    topics.AI_JOB_LIFECYCLE.name,
    topics.USAGE_RECORDED.name,
    topics.USAGE_BUDGET.name,
    *(t.dead_letter for t in topics.ALL),
]

group: Group[Ports] = Group("alerts", TOPICS, lambda settings: Each(16))


def _record(record: Record) -> Record:
    return record


@group.on(ANY, decode=_record)
async def observe(record: Record, ports: Ports) -> None:
    await store.observe(ports.db, await observations(record, ports.db))


@group.every(lambda settings: settings.alert_eval_s)
async def tick(ports: Ports) -> None:
    await evaluate(ports)
