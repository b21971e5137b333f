"""Replaying history: export a time range of events, or re-run it through a group.

Events come from Kafka while it still holds the whole range, else from the
S3 archive. Re-running uses the group's replay side mode: its handlers touch
the database only, never a provider, vendor, stream or topic.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import orjson

from ayush.groups import GROUPS, REPLAY_ALIASES, REPLAY_GROUPS, Wired
from infra.archive import reader as archive_reader
from infra.archive.format import StoredRecord
from infra.db import projection, snapshots, user_data
from infra.db.engine import Database
from infra.db.tenants import find_tenant_id
from infra.errors import PermanentError
from infra.kafka.codec import decode_raw
from infra.kafka.history import History
from infra.kafka.sealing import Sealer
from infra.s3 import ObjectStore
from infra.settings import Settings

Source = Literal["auto", "kafka", "archive"]


@dataclass(frozen=True)
class Query:
    topics: list[str]
    start: datetime
    end: datetime
    tenant_id: uuid.UUID | None = None
    types: frozenset[str] = frozenset()
    source: Source = "auto"

    def matches(self, record: StoredRecord) -> bool:
        if self.tenant_id is None and not self.types:
            return True
        # The type header and a plain JSON read keep a filtered replay fast;
        # the envelope is validated when it is handled.
        try:
            event = orjson.loads(record.value)
            event_type = record.header("ayush-type") or event["type"]
            if self.types and event_type not in self.types:
                return False
            return self.tenant_id is None or uuid.UUID(event["tenant_id"]) == self.tenant_id
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return False


class Progress(Protocol):
    """What a replay reports as it goes; the CLI draws it as a progress bar."""

    def topic(self, topic: str, source: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class NoProgress:
    def topic(self, topic: str, source: str, total: int) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None


@dataclass
class ReplayReport:
    read: int = 0
    matched: int = 0
    handled: int = 0
    # A forgotten user's events: their data key is destroyed, so they are skipped.
    forgotten: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


async def read(
    settings: Settings, query: Query, report: ReplayReport, progress: Progress
) -> AsyncIterator[StoredRecord]:
    """The matching records of each topic in turn, from Kafka or from the archive."""
    async with AsyncExitStack() as stack:
        history = await stack.enter_async_context(History(settings))
        store: ObjectStore | None = None
        for topic in query.topics:
            full = settings.topic(topic)
            # Locating asks the broker for its metadata, slow on a broker of many
            # topics: an archive-only read skips it.
            where = None if query.source == "archive" else await history.locate(full, query.start)
            use_kafka = where is not None and (query.source == "kafka" or where.complete())
            if where is not None and use_kafka:
                records = history.read(where, query.end)
                total = where.upper_bound
            else:
                if store is None:
                    store = await ObjectStore(settings).start()
                    stack.push_async_callback(store.close)
                prefix = settings.archive_prefix
                total = await archive_reader.count_objects(
                    store, prefix, full, query.start, query.end
                )
                records = archive_reader.read_range(store, prefix, full, query.start, query.end)
            report.sources[topic] = "kafka" if use_kafka else "archive"
            progress.topic(topic, report.sources[topic], total)
            async for record in records:
                report.read += 1
                progress.advance()
                if query.matches(record):
                    report.matched += 1
                    yield record


async def export(
    settings: Settings, query: Query, out: Path, progress: Progress | None = None
) -> ReplayReport:
    """Write the matching events, one envelope as it was stored per line."""
    report = ReplayReport()
    with out.open("wb") as handle:
        async for record in read(settings, query, report, progress or NoProgress()):
            handle.write(record.value.rstrip(b"\n") + b"\n")
    return report


def replay_spec(group: str) -> Wired:
    group = REPLAY_ALIASES.get(group, group)
    spec = GROUPS.get(group) or REPLAY_GROUPS.get(group)
    if spec is None or spec.replay is None:
        known = [n for n, s in {**GROUPS, **REPLAY_GROUPS}.items() if s.replay is not None]
        known += [f"{alias} (= {name})" for alias, name in REPLAY_ALIASES.items()]
        raise KeyError(f"group {group!r} has no replay mode; groups that do: {', '.join(known)}")
    return spec


async def into_group(
    settings: Settings,
    query: Query,
    group: str,
    progress: Progress | None = None,
    reference_database_url: str | None = None,
) -> ReplayReport:
    """Run the matching events, oldest first, through the group's replay handlers.

    With `reference_database_url` (the live database) the tenants and API keys
    the events name are copied first: they are not event-sourced, and an
    empty database being rebuilt needs them. Users' sealed events are opened with the
    data keys of the live database; a forgotten user's (key destroyed) are skipped.
    """
    spec = replay_spec(group)
    assert spec.replay is not None
    report = ReplayReport()
    read_back = [r async for r in read(settings, query, report, progress or NoProgress())]
    records = in_replay_order(settings, read_back, spec.topics)
    async with AsyncExitStack() as stack:
        ports = await spec.replay(settings, stack)
        routes = spec.group.routes(ports)
        sealer = Sealer.from_settings(settings, reference_database_url)
        if sealer is not None:
            stack.push_async_callback(sealer.close)
        events = []
        for record in records:
            try:
                opened = await _opened(sealer, record)
                if opened is None:
                    report.forgotten += 1
                    continue
                events.append((opened, decode_raw(opened.value)))
            except (ValueError, PermanentError) as exc:  # not an envelope, no upcaster for
                # it, or a sealed payload that does not open
                where = f"{record.topic}:{record.partition}:{record.offset}"
                report.failures.append(f"{where}: {type(exc).__name__}: {exc}")
        if reference_database_url and reference_database_url != settings.database_url:
            await _copy_reference_rows(
                settings, reference_database_url, {e.tenant_id for _, e in events}
            )
        for record, raw in events:
            route = routes.get(raw.type)
            if route is None:
                continue
            try:
                event = route.decode(record)
                await route.handle([event] if route.batch else event)
                report.handled += 1
            except Exception as exc:  # reported, not hidden: the replay goes on
                report.failures.append(f"{raw.type} {raw.id}: {type(exc).__name__}: {exc}")
    return report


async def _opened(sealer: Sealer | None, record: StoredRecord) -> StoredRecord | None:
    """The record with its sealed payload opened; None when it is a forgotten user's."""
    if sealer is None:
        return record
    value = await sealer.open_value(record.value)
    if value is None:
        return None
    return record if value is record.value else dataclasses.replace(record, value=value)


def in_replay_order(
    settings: Settings, records: list[StoredRecord], topics: list[str]
) -> list[StoredRecord]:
    """The records oldest first; those of one millisecond in the order of the group's
    topics (a job's request before what followed it on another topic). Records carry the
    topic's full name, with this deployment's prefix."""
    order = {settings.topic(name): i for i, name in enumerate(topics)}

    def key(record: StoredRecord) -> tuple[int, int, int, int]:
        topic = order.get(record.topic, len(order))
        return (record.timestamp_ms, topic, record.partition, record.offset)

    return sorted(records, key=key)


async def _copy_reference_rows(
    settings: Settings, source_url: str, tenant_ids: set[uuid.UUID]
) -> None:
    _, target_url, _ = settings.require_services()
    source, target = Database(source_url, pool_size=1), Database(target_url, pool_size=1)
    try:
        await projection.copy_reference_rows(source, target, sorted(tenant_ids))
    finally:
        await source.close()
        await target.close()


class UnknownTenant(LookupError):
    pass


async def resolve_tenants(
    database_url: str, names_or_ids: list[str], *, rows_required: bool = True
) -> list[uuid.UUID]:
    """Tenant ids from names or ids, as the CLI takes them; UnknownTenant names the first miss.

    Without `rows_required` an id is taken as given even with no tenant row:
    history outlives tenants, and their events can still be read back.
    """
    db = Database(database_url, pool_size=1)
    try:
        found = []
        for given in names_or_ids:
            tenant_id = await find_tenant_id(db, given)
            if tenant_id is None and not rows_required:
                tenant_id = _as_uuid(given)
            if tenant_id is None:
                raise UnknownTenant(f"no tenant named or with the id {given!r}")
            found.append(tenant_id)
        return found
    finally:
        await db.close()


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


PROJECTIONS = ("jobs", "usage", "memory", "conversations")


async def verify(
    live_url: str,
    rebuilt_url: str,
    tenant_ids: list[uuid.UUID],
    projections: tuple[str, ...] = PROJECTIONS,
) -> list[str]:
    """Differences between the live and the rebuilt projections of these tenants.

    A forgotten user's rows (made before their forget) are left out on both sides: the
    rebuild cannot read their events any more (their data key is destroyed), and the
    live rows are erased or tombstones. Every other user's rows are compared as ever."""
    tables = [
        *(snapshots.USAGE_TABLES if "usage" in projections else ()),
        *(snapshots.MEMORY_TABLES if "memory" in projections else ()),
        *(snapshots.CONVERSATION_TABLES if "conversations" in projections else ()),
    ]
    live_db, rebuilt_db = Database(live_url, pool_size=1), Database(rebuilt_url, pool_size=1)
    try:
        forgotten = await user_data.forgotten_users(live_db, tenant_ids)
        sides = []
        for db in (live_db, rebuilt_db):
            rows = await projection.snapshot(db, tenant_ids) if "jobs" in projections else {}
            rows.update(await snapshots.snapshot(db, tenant_ids, tables))
            sides.append(without_forgotten(rows, forgotten))
    finally:
        await live_db.close()
        await rebuilt_db.close()
    return diff_rows(sides[0], sides[1])


# Rows that belong to another table's row: hidden with it.
_PARENTS = {
    "job_results": ("job_id",),
    "conversation_items": ("conversation_id", "response_id"),
}


def without_forgotten(
    rows: dict[str, dict[str, object]], forgotten: user_data.Forgotten
) -> dict[str, dict[str, object]]:
    """The rows less those of forgotten users (and their children)."""
    hidden: set[str] = set()
    kept: dict[str, dict[str, object]] = {}
    for key, row in rows.items():
        if forgotten.hides(key.partition(":")[0], row):
            hidden.add(str(row.get("id")))
        else:
            kept[key] = row
    return {
        key: row
        for key, row in kept.items()
        if not any(str(row.get(c)) in hidden for c in _PARENTS.get(key.partition(":")[0], ()))
    }


def diff_rows(
    live: dict[str, dict[str, object]], rebuilt: dict[str, dict[str, object]]
) -> list[str]:
    differences = []
    for key in sorted(live.keys() | rebuilt.keys()):
        a, b = live.get(key), rebuilt.get(key)
        if a is None:
            differences.append(f"{key}: only in the rebuild")
        elif b is None:
            differences.append(f"{key}: missing from the rebuild")
        else:
            for column in a:
                if a[column] != b.get(column):
                    shown = json.dumps([a[column], b.get(column)], default=str)[:300]
                    differences.append(f"{key}.{column}: live, rebuilt = {shown}")
    return differences
