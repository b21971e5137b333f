"""Publishing envelopes to Kafka, acknowledged by the broker."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from infra.errors import EventTooLarge, TransientError
from infra.kafka.codec import Headers, encode
from infra.kafka.sealing import Sealer
from infra.settings import Settings
from infra.telemetry.kafka import PublishObserver
from infra.telemetry.metrics import Metrics
from schemas.envelope import Envelope

_FROM_SETTINGS: Any = object()


class Publisher:
    """Owns one producer. `publish` returns once the broker has the event (acks=all).

    Users' events are sealed with their data keys as they are encoded (`sealer`; by
    default one over the settings' key ring, None without one), so every copy of them
    downstream holds ciphertext only; the readers of the process open them with it."""

    # The process's registry, also handed on to what a worker builds around it.
    metrics: Metrics | None = None
    sealer: Sealer | None = None

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        sealer: Sealer | None = _FROM_SETTINGS,
    ) -> None:
        self._settings = settings
        self.metrics = metrics
        self.sealer = Sealer.from_settings(settings) if sealer is _FROM_SETTINGS else sealer
        self._observer = PublishObserver(metrics)
        bootstrap, _, _ = settings.require_services()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            # Apache Kafka: no duplicates from producer retries. Tansu rejects it.
            enable_idempotence=settings.kafka_idempotent_producer,
            linger_ms=settings.kafka_linger_ms,
            request_timeout_ms=15_000,
            compression_type=None,
            max_request_size=settings.kafka_max_message_bytes,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        try:
            await self._producer.stop()
        finally:
            if self.sealer is not None:
                await self.sealer.close()

    async def ping(self) -> None:
        """Raises if the broker cannot be reached."""
        try:
            await self._producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise TransientError(f"kafka unreachable: {exc}") from exc

    async def publish(
        self, topic: str, envelope: Envelope[Any], extra_headers: Headers | None = None
    ) -> None:
        key, value, headers = await self._encode(envelope)
        all_headers = headers + (extra_headers or [])
        await self.send(self._settings.topic(topic), value, key=key, headers=all_headers)

    async def publish_many(self, items: list[tuple[str, Envelope[Any]]]) -> None:
        """Send several events at once and wait for every acknowledgement."""
        futures = []
        for topic, envelope in items:
            key, value, headers = await self._encode(envelope)
            futures.append(
                await self._send_nowait(self._settings.topic(topic), value, key, headers)
            )
        await self._await_all(futures)

    async def _encode(self, envelope: Envelope[Any]) -> tuple[bytes, bytes, Headers]:
        key, value, headers = encode(envelope)
        if self.sealer is not None:
            value = await self.sealer.encode_value(envelope, value)
        return key, value, headers

    async def send(
        self, full_topic: str, value: bytes, *, key: bytes | None, headers: Headers
    ) -> None:
        """Send a record to an already prefixed topic name (dead letters, replays)."""
        future = await self._send_nowait(full_topic, value, key, headers)
        await self._await_all([future])

    async def _send_nowait(
        self, topic: str, value: bytes, key: bytes | None, headers: Headers
    ) -> asyncio.Future[Any]:
        headers, token = self._observer.start(topic, headers)
        try:
            future = await self._producer.send(topic, value=value, key=key, headers=headers)
        except MessageSizeTooLargeError as exc:
            self._observer.failed(token, exc)
            raise EventTooLarge(f"event of {len(value)} bytes is over the log's limit") from exc
        except KafkaError as exc:
            self._observer.failed(token, exc)
            raise TransientError(f"kafka send to {topic} failed: {exc}") from exc
        self._observer.sent(token, future)
        return future

    @staticmethod
    async def _await_all(futures: list[asyncio.Future[Any]]) -> None:
        try:
            await asyncio.gather(*futures)
        except MessageSizeTooLargeError as exc:  # the topic's own limit is lower
            raise EventTooLarge(f"the broker refused an event as too large: {exc}") from exc
        except KafkaError as exc:
            raise TransientError(f"kafka did not acknowledge: {exc}") from exc
