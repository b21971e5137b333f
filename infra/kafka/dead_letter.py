"""Parking an event that cannot be handled on its topic's dead-letter topic."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.structs import ConsumerRecord

from infra.errors import TransientError
from infra.kafka.publisher import Publisher

log = logging.getLogger(__name__)


async def dead_letter(
    publisher: Publisher,
    group: str,
    record: ConsumerRecord[bytes, bytes],
    error: str,
    attempts: int,
) -> None:
    """Publish the record with its error; keep trying until the broker takes it."""
    headers = [
        *[(k, v) for k, v in (record.headers or ()) if not k.startswith("ayush-dlq-")],
        ("ayush-dlq-error", error[:4000].encode()),
        ("ayush-dlq-source", f"{record.topic}:{record.partition}:{record.offset}".encode()),
        ("ayush-dlq-group", group.encode()),
        ("ayush-dlq-attempts", str(attempts).encode()),
    ]
    delay = 0.5
    while True:
        try:
            await publisher.send(
                f"{record.topic}.dlq", record.value or b"", key=record.key, headers=headers
            )
            return
        except TransientError as exc:
            log.warning("dead-letter publish failed, retrying: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def gave_up_reason(group: str, exc: BaseException, attempts: int) -> str:
    """What a client reads: the kind of failure, not its internals (hosts, queries)."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return (
        f"internal error in {group}{tries} ({type(exc).__name__}); "
        "the request was set aside for an operator"
    )
