"""When a schedule fires: cron in a time zone (croniter), an interval, or one time.

Cron slots are found in the zone's wall-clock time, then placed on the timeline:
a wall time the zone skips (02:30 on the night clocks go forward) is no slot; a
wall time it repeats (01:30 on the night they go back) is one slot, its first
occurrence. Interval slots are `anchor + k * interval_s`; a one-time schedule has
the one slot `at`. Every time here is aware; slots are returned in UTC.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

# Slot ids are uuid5 in this namespace, of "<schedule id>/<slot time, UTC ISO 8601>".
SLOT_NAMESPACE = uuid.UUID("6f1f3c2e-5a8b-4c1d-9e37-2b1a0c9d8e71")
# A cron expression that names no real time (Feb 30) stops the search after this many.
_MAX_CANDIDATES = 10_000


class InvalidTiming(ValueError):
    """A cron expression, zone or interval that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTiming("timezone", f"unknown IANA time zone {name!r}") from exc


def check_cron(expression: str) -> str:
    """The expression, if it is a valid 5-field cron expression."""
    if len(expression.split()) != 5:
        raise InvalidTiming("cron", "a cron expression has 5 fields: minute hour day month weekday")
    if not croniter.is_valid(expression):
        raise InvalidTiming("cron", f"not a valid cron expression: {expression!r}")
    return expression


@dataclass(frozen=True)
class Timing:
    """One of: `cron` (with `timezone`), `interval_s` (from `anchor`), `at`."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_s: int | None = None
    anchor: datetime | None = None
    at: datetime | None = None

    def next_after(self, after: datetime) -> datetime | None:
        """The first slot strictly after `after`; None when there is none."""
        if self.cron is not None:
            return _next_cron(self.cron, zone(self.timezone), after)
        if self.interval_s is not None:
            assert self.anchor is not None
            step = timedelta(seconds=self.interval_s)
            if after < self.anchor:
                return self.anchor.astimezone(UTC)
            return (self.anchor + ((after - self.anchor) // step + 1) * step).astimezone(UTC)
        if self.at is not None and self.at > after:
            return self.at.astimezone(UTC)
        return None

    def slots(self, first: datetime, until: datetime, keep: int) -> tuple[list[datetime], int]:
        """The last `keep` slots from `first` (a slot) through `until`, and how many there
        were in all. (An interval's are counted, not walked: a scheduler down for a week
        behind a 1 s interval does not step through 600 000 slots.)"""
        if self.cron is None and self.interval_s is not None:
            if first > until:
                return [], 0
            step = timedelta(seconds=self.interval_s)
            count = (until - first) // step + 1
            n = min(max(keep, 1), count)
            return [first + (count - n + i) * step for i in range(n)], count
        kept: deque[datetime] = deque(maxlen=max(keep, 1))
        count = 0
        slot: datetime | None = first
        while slot is not None and slot <= until:
            kept.append(slot)
            count += 1
            slot = self.next_after(slot)
        return list(kept), count


def _next_cron(expression: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    wall = after.astimezone(tz).replace(tzinfo=None)
    found = croniter(expression, wall)
    for _ in range(_MAX_CANDIDATES):
        candidate: datetime = found.get_next(datetime)
        placed = candidate.replace(tzinfo=tz, fold=0)
        if placed.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != candidate:
            continue  # a wall time the zone skips
        slot = placed.astimezone(UTC)
        if slot > after:  # (inside a repeated hour, its first pass is already behind)
            return slot
    return None


def slot_id(schedule_id: uuid.UUID, slot_at: datetime) -> uuid.UUID:
    """The id of one slot of one schedule, the same in every scheduler copy."""
    return uuid.uuid5(SLOT_NAMESPACE, f"{schedule_id}/{slot_at.astimezone(UTC).isoformat()}")


__all__ = ["CroniterError", "InvalidTiming", "Timing", "check_cron", "slot_id", "zone"]
