"""The usage-projection group: daily usage totals and monthly spend, rebuilt from events alone.

| topic          | event type                       | handler      |
|----------------|----------------------------------|--------------|
| usage.recorded | usage.recorded                   | on_usage     |
| usage.budget   | usage.budget.threshold_crossed   | on_threshold |

Runs only in replay (`ayush replay --into-group usage-projection`): live, the
usage group writes these rows and also settles budget counters in Redis and
announces thresholds, which a replay must not do again. It adds each usage
event with the usage group's own statement (claimed by event id, so nothing
counts twice), and takes the alerts already sent from the threshold events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumers.usage import usage_row
from infra.db import usage as usage_store
from infra.db.engine import Database
from infra.kafka.routes import Route
from schemas import jobs as ev
from schemas import topics
from schemas import usage as uev
from schemas.envelope import RawEnvelope

GROUP = "usage-projection"
TOPICS = [topics.USAGE_RECORDED.name, topics.USAGE_BUDGET.name]


@dataclass(frozen=True)
class Ports:
    db: Database


def handlers(ports: Ports) -> Mapping[str, Route]:
    async def on_usage(raw: RawEnvelope) -> None:
        # The live path reads the stored JSON; the envelope written back holds the same fields.
        await usage_store.record_batch(ports.db, [usage_row(raw.model_dump_json().encode())])

    async def on_threshold(raw: RawEnvelope) -> None:
        crossed = uev.BudgetThresholdCrossed.model_validate(raw.payload)
        scope_id = crossed.api_key_id if crossed.scope == "key" else raw.tenant_id
        assert scope_id is not None, "a key's threshold event names its key"
        await usage_store.mark_alerted(
            ports.db, (crossed.scope, scope_id, crossed.period), crossed.threshold_pct
        )

    return {
        ev.USAGE_RECORDED: Route(on_usage),
        uev.BUDGET_THRESHOLD_CROSSED: Route(on_threshold),
    }
