"""Envelopes to Kafka records and back."""

from __future__ import annotations

from typing import Any

from schemas.envelope import Envelope, RawEnvelope
from schemas.versions import upcast

Headers = list[tuple[str, bytes]]


def encode(envelope: Envelope[Any]) -> tuple[bytes, bytes, Headers]:
    """Key, value and headers of one event. The key keeps a job's events in order."""
    value = envelope.model_dump_json().encode()
    key = str(envelope.correlation_id).encode()
    headers: Headers = [
        ("ayush-type", envelope.type.encode()),
        ("ayush-version", str(envelope.version).encode()),
    ]
    return key, value, headers


def decode_raw(value: bytes | None) -> RawEnvelope:
    """Parse the envelope and upcast its payload (left a dict) to the current version.

    Raises pydantic.ValidationError or ValueError.
    """
    return upcast(decode_stored(value))


def decode_stored(value: bytes | None) -> RawEnvelope:
    """Parse the envelope exactly as it was written (no upcasting): audit and archive."""
    if value is None:
        raise ValueError("empty message (tombstone)")
    return RawEnvelope.model_validate_json(value)
