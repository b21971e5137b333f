"""The notifications group: turns events of the public types into signed webhook messages.

For each event, every enabled subscription of its tenant whose patterns name the public
type gets one message row, id derived from the event and the subscription (a redelivered
event writes nothing new), due now; the dispatcher (dispatcher.py) sends it. The handler
only writes rows and wakes the dispatcher: no endpoint, slow or dead, is ever in the
consumer's path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumers.groups.notifications.dispatcher import Dispatcher
from consumers.groups.notifications.public import PUBLIC, TOPICS, Public, body
from infra.db import outbound_webhooks as store
from infra.db.engine import Database
from infra.kafka.group import Group
from infra.kafka.policies import Each
from schemas.envelope import Envelope
from schemas.ids import derived_id
from schemas.outbound_webhooks import matches


@dataclass(frozen=True)
class Ports:
    db: Database
    dispatcher: Dispatcher | None = None


group: Group[Ports] = Group("notifications", TOPICS, lambda settings: Each(16))


async def enqueue(raw: Envelope[Any], public: Public, ports: Ports) -> int:
    """Write one message per matching subscription; returns how many were new."""
    subscriptions = await store.enabled_subscriptions(ports.db, raw.tenant_id)
    wanted = [s for s in subscriptions if any(matches(p, public.type) for p in s.event_types)]
    if not wanted:
        return 0
    text = body(raw, public).decode()
    written = await store.enqueue(
        ports.db,
        [
            store.NewMessage(
                id=derived_id(raw.id, f"webhook:{sub.id}"),
                subscription_id=sub.id,
                tenant_id=raw.tenant_id,
                event_id=raw.id,
                event_type=public.type,
                body=text,
            )
            for sub in wanted
        ],
    )
    if ports.dispatcher is not None:
        ports.dispatcher.wake()
    return written


def _handler(public: Public) -> Callable[[Envelope[Any], Ports], Awaitable[None]]:
    async def handle(raw: Envelope[Any], ports: Ports) -> None:
        await enqueue(raw, public, ports)

    handle.__name__ = f"notify_{public.type.replace('.', '_')}"
    return handle


for _internal, _public in PUBLIC.items():
    group.on(_internal)(_handler(_public))
