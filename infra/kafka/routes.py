"""Routes: how a group decodes and handles each event type (what `GroupRunner` runs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.structs import ConsumerRecord

from infra.kafka.codec import decode_raw
from infra.kafka.policies import RetryPolicy
from infra.settings import Settings

Record: TypeAlias = ConsumerRecord[bytes, bytes]
# The route of every record, whatever its type (the archive).
ANY = "*"


def envelope(record: Record) -> Any:
    """The envelope with its payload left a dict (upcast to the current version)."""
    return decode_raw(record.value)


@dataclass(frozen=True)
class Route:
    """How one event type is handled.

    `handle` takes one decoded event, or a list of them when `batch`. `give_up` is called
    with one event and a short reason once the runner parked it as a dead letter, to settle
    what it started (a job never stays `running` for good). `retry` builds the route's
    retry policy from the settings when it differs from the group's.
    """

    handle: Callable[[Any], Awaitable[None]]
    decode: Callable[[Record], Any] = envelope
    batch: bool = False
    give_up: Callable[[Any, str], Awaitable[None]] | None = None
    retry: Callable[[Settings], RetryPolicy] | None = None


def header_type(record: Record) -> str | None:
    for key, value in record.headers or ():
        if key == "ayush-type":
            return value.decode(errors="replace")
    return None
