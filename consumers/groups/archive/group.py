"""The archive group: every event of every topic, dead letters included, kept in S3.

Gzipped JSON lines per topic, partition and hour, a manifest per object, and an
event_log row per event (the audit trail's index). Runs on `Batches`: a list is
written, then its offsets are committed, so a crash loses nothing and a redo
overwrites the same objects (named by their first offset). The event_log insert
ignores rows it already has. A record that is no envelope goes to its topic's
dead letters (those are kept as is).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord

from infra.archive.format import StoredRecord, encode, manifest_key, object_key
from infra.db import event_log
from infra.db.engine import Database
from infra.kafka.codec import decode_stored
from infra.kafka.group import Group
from infra.kafka.policies import Batches
from infra.kafka.routes import ANY, Record
from infra.s3 import ObjectStore
from infra.settings import Settings
from schemas import topics

log = logging.getLogger(__name__)

Records = Sequence[ConsumerRecord[bytes, bytes]]


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    store: ObjectStore


group: Group[Ports] = Group(
    "archive",
    [name for t in topics.ALL for name in (t.name, t.dead_letter)],
    lambda settings: Batches(settings.archive_batch_events, settings.archive_batch_age_s),
)


def archivable(record: Record) -> Record:
    """The record itself, once it is known to be an envelope (or a dead letter, kept as is:
    it went there for being what it is); anything else is refused, hence dead-lettered."""
    if not record.topic.endswith(".dlq"):
        decode_stored(record.value)
    return record


@group.on(ANY, decode=archivable, batch=True)
async def archive_batch(records: Records, ports: Ports) -> None:
    """Write the batch's objects and manifests, then index its events."""
    groups: dict[tuple[str, int, str], list[StoredRecord]] = defaultdict(list)
    for record in map(StoredRecord.of, records):
        groups[(record.topic, record.partition, f"{record.time:%Y%m%d%H}")].append(record)
    prefix = ports.settings.archive_prefix
    for chunk in groups.values():
        chunk.sort(key=lambda r: r.offset)
        first = chunk[0]
        key = object_key(prefix, first.topic, first.time, first.partition, first.offset)
        body, manifest = encode(chunk)
        # The object before its manifest: readers trust only manifested objects.
        await ports.store.put(key, body, "application/gzip")
        manifest["object"] = key
        await ports.store.put(manifest_key(key), json.dumps(manifest).encode(), "application/json")
    rows = [row for r in map(StoredRecord.of, records) if (row := log_row(r)) is not None]
    await event_log.record(ports.db, rows)


def log_row(record: StoredRecord) -> dict[str, Any] | None:
    """The event_log row of one record, or None for a record that is no envelope."""
    try:
        event = decode_stored(record.value)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return None
    return {
        "event_id": event.id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "type": event.type,
        "version": event.version,
        "tenant_id": event.tenant_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "actor_kind": event.actor.kind,
        "actor_id": event.actor.id,
        "api_key_id": _api_key_id(event.actor.kind, event.actor.id, event.payload),
        "occurred_at": event.occurred_at,
        "payload": event.payload,
        "dead_letter_error": record.header("ayush-dlq-error"),
    }


def _api_key_id(actor_kind: str, actor_id: str, payload: dict[str, Any]) -> uuid.UUID | None:
    candidate = actor_id if actor_kind == "api_key" else payload.get("api_key_id")
    try:
        return uuid.UUID(str(candidate)) if candidate else None
    except ValueError:
        return None
