"""Identifiers: time-ordered ones (UUIDv7, RFC 9562) without a third-party package, and
the derived id of a tenant's end user."""

from __future__ import annotations

import os
import threading
import time
import uuid

# The last UUIDv7 made here, as (milliseconds, the 74 bits after them): the next one made
# in the same millisecond (or after the clock stepped back) counts on from it.
_last_uuid7 = (0, 0)
_uuid7_lock = threading.Lock()
_RAND_BITS = 74


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits, increasing within a process.

    Sorting by the id sorts by creation time, which keeps Postgres indexes
    append-mostly and makes event ids readable as a timeline. Ids made in one
    millisecond sort in the order they were made too (RFC 9562, 6.2, method 2: the
    random part of the next is the last one's plus one), so an order taken from ids
    (a conversation's items) is the order of creation.
    """
    global _last_uuid7
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << _RAND_BITS) - 1)
    with _uuid7_lock:
        last_millis, last_rand = _last_uuid7
        if millis <= last_millis:
            millis, rand = last_millis, last_rand + 1
            if rand >> _RAND_BITS:  # 2**74 ids in one millisecond: borrow the next one
                millis, rand = millis + 1, 0
        _last_uuid7 = (millis, rand)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 62) << 64  # 12 bits of the random part
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
