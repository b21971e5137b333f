"""The due-attempts loop: sends pending webhook messages when their time comes.

It runs beside the consumer, never in its path: the handlers only write message rows and
wake it. Each endpoint gets at most `webhook_endpoint_concurrency` attempts at once, each
under `webhook_timeout_s`, so a slow or dead endpoint holds its own slots and nobody
else's. A failed attempt is retried on the fixed schedule (scaled by
`webhook_retry_scale`); an endpoint that has failed every attempt for the disabling window
is disabled and a `webhook.disabled` event says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from infra.connectors.outbound_webhook import WebhookSender
from infra.db import outbound_webhooks as store
from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.sealed import opened
from infra.errors import PermanentError
from infra.kafka.publisher import Publisher
from infra.now_and_then import AtMostEvery
from infra.settings import Settings
from infra.vault import Vault
from infra.webhook_signing import headers
from schemas import outbound_webhooks as public_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import derived_id

log = logging.getLogger(__name__)

# Seconds after the previous attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
SYSTEM = Actor(kind="system", id="notifications")
# How often settled messages past `webhook_log_keep_days` are pruned.
PRUNE_EVERY_S = 3600.0
# How long `stop` waits for the loop and the slots to reach a point between calls.
STOP_GRACE_S = 10.0


def retry_in(step: int, scale: float) -> timedelta | None:
    """The wait before attempt `step + 1` (0-based) after attempt `step` failed; None when
    the schedule is spent."""
    following = step + 1
    if following >= len(SCHEDULE_S):
        return None
    return timedelta(seconds=SCHEDULE_S[following] * scale)


@dataclass
class Dispatcher:
    settings: Settings
    db: Database
    vault: Vault
    sender: WebhookSender
    publisher: Publisher

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        self._busy: Counter[uuid.UUID] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sends: set[asyncio.Task[store.Attempt]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._prune = AtMostEvery(PRUNE_EVERY_S)

    def wake(self) -> None:
        """New messages are due now (the handlers call this after writing them)."""
        self._wake.set()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stops between database calls, never inside one: a task cancelled inside an
        asyncpg call can be left spinning (MagicStack/asyncpg#873), and its connection
        with it. Requests under way are abandoned; their leases let the next loop send
        them again."""
        self._stopping = True
        self._wake.set()
        for send in list(self._sends):
            send.cancel()
        running = [*self._tasks, *([self._loop] if self._loop else [])]
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=STOP_GRACE_S)
        if late:  # stuck in a call that does not return: the last resort
            log.error("webhook dispatcher: %d tasks did not stop; cancelling them", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=STOP_GRACE_S)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            try:
                claimed = await self.pump()
            except Exception:
                log.exception("webhook dispatcher: claiming failed")
                claimed = 0
            if claimed:
                continue
            if self._prune.due():
                await self._prune_log()
            await self._sleep()

    async def _prune_log(self) -> None:
        before = utcnow() - timedelta(days=self.settings.webhook_log_keep_days)
        try:
            pruned = await store.prune(self.db, before)
        except Exception:
            log.exception("webhook dispatcher: pruning the delivery log failed")
            return
        if pruned:
            log.info(
                "webhook delivery log: %d settled messages older than %s pruned", pruned, before
            )

    async def _sleep(self) -> None:
        wait = self.settings.webhook_poll_s
        try:
            due = await store.next_due_at(self.db)
        except Exception:
            due = None
        if due is not None:
            wait = min(wait, max((due - utcnow()).total_seconds(), 0.001))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def pump(self) -> int:
        """Claim the due messages there is room for and start their attempts."""
        cap = self.settings.webhook_endpoint_concurrency
        room = self.settings.webhook_max_in_flight - len(self._tasks)
        if room <= 0 or self._stopping:
            return 0
        lease_s = self.settings.webhook_timeout_s + 30
        claimed = await store.claim_due(self.db, min(room, 64), lease_s, cap, self._busy)
        started = 0
        for due in claimed:
            self._busy[due.subscription_id] += 1
            task = asyncio.create_task(self._slot(due))
            self._tasks.add(task)
            task.add_done_callback(self._done(due.subscription_id))
            started += 1
        return started

    def _done(self, subscription_id: uuid.UUID) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._busy[subscription_id] -= 1
            if self._busy[subscription_id] <= 0:
                del self._busy[subscription_id]
            self._wake.set()  # room again: that endpoint's next message may go

        return done

    async def _slot(self, due: store.Due) -> None:
        """One of an endpoint's slots: attempts a message, then the endpoint's next due one,
        until none is due (the loop's claim then finds it again when one is)."""
        lease_s = self.settings.webhook_timeout_s + 30
        current: store.Due | None = due
        while current is not None and not self._stopping:
            try:
                await self._attempt(current)
            except Exception:
                # The lease runs out and the attempt is made again: nothing is lost.
                log.exception("webhook message %s: attempt failed unexpectedly", current.id)
                return
            subscription_id = current.subscription_id
            try:
                current = await store.claim_next(self.db, subscription_id, lease_s)
            except Exception:
                log.exception("webhook subscription %s: claiming failed", subscription_id)
                return

    async def _attempt(self, due: store.Due) -> None:
        sub = due.subscription
        try:
            secrets = store.signing_secrets(opened(self.vault, sub), sub.previous_valid_until)
        except PermanentError as exc:  # its key is gone from the ring: nothing to send
            attempt = store.Attempt(None, 0, None, f"cannot sign: {exc}"[:1000])
        else:
            body = due.body.encode()
            signed = headers(secrets, message_id(due.id), int(time.time()), body)
            sent = await self._send(due.url, signed, body)
            if sent is None:  # stopping: the lease runs out and the next loop sends it
                return
            attempt = sent
        wait = retry_in(due.step, self.settings.webhook_retry_scale)
        failing_since = await store.settle(self.db, due, attempt, wait)
        if failing_since is not None:
            await self._maybe_disable(sub, failing_since)

    async def _send(self, url: str, signed: dict[str, str], body: bytes) -> store.Attempt | None:
        """The request, in a task of its own that `stop` may cancel; None when it did."""
        send = asyncio.create_task(self.sender.send(url, signed, body))
        self._sends.add(send)
        try:
            return await send
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                send.cancel()
                raise  # this slot itself was cancelled
            return None
        finally:
            self._sends.discard(send)

    async def _maybe_disable(self, sub: store.WebhookSubscription, since: datetime) -> None:
        window = self.settings.webhook_disable_after_s * self.settings.webhook_retry_scale
        failing_s = (utcnow() - since).total_seconds()
        if failing_s < window:
            return
        reason = f"every delivery failed for {failing_s:.0f} s (since {since.isoformat()})"
        event = public_events.WebhookDisabled(
            subscription_id=sub.id,
            url=sub.url,
            failing_since=since,
            reason=reason,
        )
        # Published first, under an id derived from the episode: a crash before the row is
        # updated publishes the same event again, and its messages dedupe.
        event_id = derived_id(sub.id, f"disabled:{since.isoformat()}")
        await self.publisher.publish(
            topics.NOTIFICATIONS_EVENTS.name,
            Envelope(
                id=event_id,
                type=public_events.WEBHOOK_DISABLED,
                tenant_id=sub.tenant_id,
                actor=SYSTEM,
                correlation_id=sub.id,
                payload=event,
            ),
        )
        if await store.disable(self.db, sub.id, reason):
            log.warning("webhook subscription %s disabled: %s", sub.id, reason)


def message_id(row_id: uuid.UUID) -> str:
    """The webhook-id header: stable across attempts and redeliveries."""
    return f"msg_{row_id.hex}"
