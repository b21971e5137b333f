"""Encoding archived records: object keys, JSON lines, gzip, manifests."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class StoredRecord:
    """A Kafka record as kept by the archive (and as read back from Kafka by replay)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: Headers

    @classmethod
    def of(cls, record: Any) -> StoredRecord:
        """The archive's copy of a record fetched from Kafka (an aiokafka ConsumerRecord)."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value or b"",
            headers=list(record.headers or ()),
        )

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


def hour_prefix(prefix: str, topic: str, at: datetime) -> str:
    return f"{prefix}/{topic}/date={at:%Y-%m-%d}/hour={at:%H}/"


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Each hour touched by [start, end), truncated to the hour."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def object_key(prefix: str, topic: str, at: datetime, partition: int, first_offset: int) -> str:
    return f"{hour_prefix(prefix, topic, at)}p{partition:04d}-o{first_offset:020d}.jsonl.gz"


def manifest_key(key: str) -> str:
    return key.removesuffix(".jsonl.gz") + ".manifest.json"


def _line(record: StoredRecord) -> dict[str, Any]:
    line: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "key": record.key.decode(errors="replace") if record.key is not None else None,
        "headers": [[k, v.decode(errors="replace")] for k, v in record.headers],
    }
    try:
        line["value"] = record.value.decode()
    except UnicodeDecodeError:
        line["value_b64"] = base64.b64encode(record.value).decode()
    return line


def encode(records: Sequence[StoredRecord]) -> tuple[bytes, dict[str, Any]]:
    """The gzipped JSON lines of records of one partition, and their manifest."""
    text = "".join(json.dumps(_line(r), separators=(",", ":")) + "\n" for r in records)
    # mtime=0: the same records always give the same bytes and checksum.
    body = gzip.compress(text.encode(), compresslevel=6, mtime=0)
    manifest = {
        "topic": records[0].topic,
        "partition": records[0].partition,
        "count": len(records),
        "first_offset": records[0].offset,
        "last_offset": records[-1].offset,
        "min_timestamp": min(r.timestamp_ms for r in records),
        "max_timestamp": max(r.timestamp_ms for r in records),
        "sha256": hashlib.sha256(body).hexdigest(),
        "bytes": len(body),
        "format": "jsonl.gz/1",
    }
    return body, manifest


def decode(topic: str, body: bytes, sha256: str | None = None) -> Iterable[StoredRecord]:
    if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
        raise ValueError("archive object does not match its manifest checksum")
    for raw in gzip.decompress(body).splitlines():
        line = orjson.loads(raw)
        value = (
            base64.b64decode(line["value_b64"]) if "value_b64" in line else line["value"].encode()
        )
        key = line["key"]
        yield StoredRecord(
            topic=topic,
            partition=int(line["partition"]),
            offset=int(line["offset"]),
            timestamp_ms=int(line["timestamp"]),
            key=key.encode() if key is not None else None,
            value=value,
            headers=[(k, v.encode()) for k, v in line["headers"]],
        )
