"""Identifiers: time-ordered ones (UUIDv7, RFC 9562) without a third-party package, and
the derived id of a tenant's end user."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits.

    Sorting by the id sorts by creation time, which keeps Postgres indexes
    append-mostly and makes event ids readable as a timeline.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def derived_id(parent: uuid.UUID, purpose: str) -> uuid.UUID:
    """A deterministic id for an event caused by `parent`.

    Re-publishing after a crash yields the same id, so downstream consumers
    dedupe it instead of counting it twice.
    """
    return uuid.uuid5(parent, purpose)


# Users get an id of the same kind as keys for the per-caller counters (rate windows,
# stream slots, budgets): derived, so every process computes the same one.
_USER_NAMESPACE = uuid.UUID("5f1c2a52-7b0e-4a53-9d39-6f1a2c8e4b01")


def user_subject(tenant_id: uuid.UUID, user_id: str) -> uuid.UUID:
    """The counters' id for one user of one tenant."""
    return uuid.uuid5(_USER_NAMESPACE, f"{tenant_id}:{user_id}")
