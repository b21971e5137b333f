"""Evaluating every enabled rule on the clock: opening, announcing and resolving episodes.

For each rule, `measure` says whether its condition holds now (and the value behind it):

- holds, no firing episode: one opens (id uuid5 of rule and start), `alert.fired` goes out;
- holds, firing: nothing (an episode fires once);
- does not hold, firing: the episode resolves, `alert.resolved` goes out.

Opening is an INSERT that the partial unique index on firing episodes admits once per
rule: two evaluators (two copies of the group) cannot both open one. The announcement is
relayed from the episode row (`fired_sent`, `resolved_sent`): a crash between the two
announces it on the next pass, under the same ids. A rule that cannot be measured now
(the lag of a group Kafka does not describe) keeps its state; a rule turned off while
firing resolves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from consumers.groups.alerts.delivery import Outbox, send_unsent
from infra.db import alerts as store
from infra.db.alerts import AlertEpisode, AlertRule
from infra.db.engine import Database
from infra.errors import PermanentError, TransientError
from infra.kafka.publisher import Publisher
from infra.settings import Settings
from schemas.alerts import MAX_WINDOW_S
from schemas.ids import derived_id

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# The lag of a consumer group of this deployment; None when it cannot be read now.
Lag = Callable[[str], Awaitable[int | None]]
RULES_PER_PAGE = 200
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    publisher: Publisher
    clock: Clock
    lag: Lag | None = None


@dataclass(frozen=True)
class Measure:
    holds: bool
    value: float
    threshold: float


async def evaluate(ports: Ports) -> None:
    """One pass over every enabled rule, then the observations past the longest window go."""
    now = ports.clock()
    after: uuid.UUID | None = None
    while True:
        rules = await store.enabled_rules(ports.db, after, RULES_PER_PAGE)
        for rule in rules:
            try:
                await evaluate_rule(rule, now, ports)
            except (TransientError, PermanentError) as exc:
                # Its episode and announcements stay as they were: the next pass tries again.
                log.warning("alert rule %s not evaluated: %s", rule.id, exc)
        if len(rules) < RULES_PER_PAGE:
            break
        after = rules[-1].id
    # A rule turned off while firing: its episode ends now (nothing evaluates it any more).
    for rule, episode in await store.disabled_firing(ports.db, RULES_PER_PAGE):
        try:
            await store.resolve_episode(ports.db, episode.id, now, episode.value)
            await send_unsent(rule, Outbox(ports.db, ports.publisher))
        except (TransientError, PermanentError) as exc:
            log.warning("alert rule %s not resolved: %s", rule.id, exc)
    await store.prune_observations(ports.db, now - timedelta(seconds=MAX_WINDOW_S) - HOUR)


async def evaluate_rule(rule: AlertRule, now: datetime, ports: Ports) -> None:
    measured = await measure(rule, now, ports)
    if measured is not None:
        firing = await store.firing_episode(ports.db, rule.id)
        if measured.holds and firing is None:
            episode = AlertEpisode(
                id=derived_id(rule.id, f"episode:{now.isoformat()}"),
                tenant_id=rule.tenant_id,
                rule_id=rule.id,
                opened_at=now,
                value=measured.value,
                threshold=measured.threshold,
            )
            if await store.open_episode(ports.db, episode):
                log.info("alert rule %s fired: %s", rule.id, measured)
        elif (
            not measured.holds
            and firing is not None
            and await store.resolve_episode(ports.db, firing.id, now, measured.value)
        ):
            log.info("alert rule %s resolved: %s", rule.id, measured)
    await send_unsent(rule, Outbox(ports.db, ports.publisher))


async def measure(rule: AlertRule, now: datetime, ports: Ports) -> Measure | None:
    p = rule.params
    kind = rule.kind
    if kind == "consumer_lag":
        lag = await ports.lag(p["group"]) if ports.lag is not None else None
        if lag is None:
            return None
        return Measure(lag > p["max_lag"], float(lag), float(p["max_lag"]))
    if kind == "spend_anomaly":
        return await _spend_anomaly(rule, now, ports.db)
    since = now - timedelta(seconds=int(p["window_s"]))
    if kind == "error_rate":
        observed, target = (
            ("model_call", p["model"]) if p.get("model") else ("connector_call", p["connector"])
        )
        w = await store.window(ports.db, rule.tenant_id, observed, since, now, target)
        rate = w.failed / w.total if w.total else 0.0
        return Measure(w.total >= p["min_events"] and rate > p["threshold"], rate, p["threshold"])
    if kind == "latency_p95":
        w = await store.window(ports.db, rule.tenant_id, "model_call", since, now, p.get("model"))
        p95 = float(w.p95_ms or 0.0)
        holds = w.timed >= p["min_events"] and p95 > p["threshold_ms"]
        return Measure(holds, p95, float(p["threshold_ms"]))
    if kind == "budget":
        least = int(p["threshold_pct"])
        w = await store.window(
            ports.db, rule.tenant_id, "budget", since, now, target_at_least=least
        )
        return Measure(w.total >= 1, float(w.total), float(least))
    if kind == "dead_letters":
        w = await store.window(ports.db, rule.tenant_id, "dead_letter", since, now)
        return Measure(w.total >= p["min_events"], float(w.total), float(p["min_events"]))
    log.warning("alert rule %s has an unknown kind %r", rule.id, kind)
    return None


async def _spend_anomaly(rule: AlertRule, now: datetime, db: Database) -> Measure:
    """Spend of the last hour over the average hour of the `baseline_hours` before it.
    Without spend in the baseline there is no average to compare with: it does not fire."""
    p = rule.params
    hours = int(p["baseline_hours"])
    last = await store.window(db, rule.tenant_id, "spend", now - HOUR, now)
    baseline = await store.window(db, rule.tenant_id, "spend", now - HOUR * (hours + 1), now - HOUR)
    average = baseline.amount / hours
    ratio = float(last.amount / average) if average > 0 else 0.0
    enough = last.amount >= Decimal(str(p["min_usd"]))
    return Measure(enough and ratio >= float(p["factor"]), ratio, float(p["factor"]))
