"""`ayush usage prune`: forget the claims of usage events Kafka can no longer deliver.

The policy: a claim (an event id in usage_events_seen) is kept while its
event can still reach the usage group, that is for the topic's retention on
the broker (or the declared one, whichever is longer), plus one segment
(records leave with their whole segment), plus a day (claims are stamped
with a day, not an instant). A cut-off inside that window is refused: a
replay could then count an event twice. Archive replays never run the usage
group, so Kafka's window is the whole window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from infra.db.engine import Database
from infra.db.usage_retention import count_claims_older_than, prune_claims_older_than
from infra.kafka.admin import Retention, topic_retention
from infra.settings import Settings
from schemas import topics

DAY = timedelta(days=1)
DEFAULT_SEGMENT = timedelta(days=7)


class PruneRefused(Exception):
    """The cut-off would forget ids whose events can still be delivered."""


@dataclass(frozen=True)
class PruneOutcome:
    older_than_days: int
    window: timedelta
    claims: int
    deleted: bool


def parse_days(text: str) -> int:
    """'400d' (or '400') as a number of days; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*d?\s*", text)
    if match is None:
        raise ValueError(f"an age in days looks like 400d, not {text!r}")
    return int(match.group(1))


def replay_window(declared: topics.Topic, broker: Retention | None) -> timedelta | None:
    """How long an event of the topic may still be delivered; None when it is kept forever."""
    retention_ms = declared.retention_ms
    segment = DEFAULT_SEGMENT
    if broker is not None:
        if broker.retention_ms < 0:
            return None
        retention_ms = max(retention_ms, broker.retention_ms)
        segment = timedelta(milliseconds=broker.segment_ms)
    return timedelta(milliseconds=retention_ms) + segment + DAY


async def prune(settings: Settings, older_than_days: int, *, dry_run: bool) -> PruneOutcome:
    """Count, and unless `dry_run` delete, the claims older than the given age."""
    _, database_url, _ = settings.require_services()
    declared = topics.USAGE_RECORDED
    window = replay_window(declared, await topic_retention(settings, declared.name))
    if window is None:
        raise PruneRefused(f"{declared.name} keeps its events forever: every claim is still needed")
    if timedelta(days=older_than_days) <= window:
        raise PruneRefused(
            f"{declared.name} can still deliver events up to {window.days} days old "
            f"(retention, one segment and a day): prune only claims older than that"
        )
    db = Database(database_url, pool_size=1)
    try:
        if dry_run:
            claims = await count_claims_older_than(db, older_than_days)
        else:
            claims = await prune_claims_older_than(db, older_than_days)
    finally:
        await db.close()
    return PruneOutcome(older_than_days, window, claims, deleted=not dry_run)
