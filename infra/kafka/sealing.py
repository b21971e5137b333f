"""Sealing users' events as they are encoded for Kafka, and opening them before decoding.

Sealing happens once, where an event becomes a record: every copy downstream (the topic,
the archive, the event index) holds only ciphertext for the payload of an event that
carries a user's text (schemas/sealing.py names them). Opening happens in every reader
before decoding (the group runner, replay, audit, history); a payload whose key was
destroyed (a forgotten user) does not open: readers skip it or show it redacted.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import orjson

from infra.data_keys import DataKeys
from infra.db.engine import Database
from infra.errors import PermanentError
from infra.settings import Settings
from infra.vault import Vault
from schemas.envelope import Envelope
from schemas.sealing import SEALED_TYPES, sealed_part, user_of

log = logging.getLogger(__name__)

# A record whose value holds none of this is in clear: no parse needed to know it.
_MARK = b'"sealed"'


def event_context(event_id: Any) -> bytes:
    """The associated data of an event's sealed payload: it opens on that event only."""
    return f"event|{event_id}".encode()


class Sealer:
    """Seals the payloads of users' events with their data keys, and opens them."""

    def __init__(self, keys: DataKeys, *, owns_db: bool = False) -> None:
        self.keys = keys
        self._owns_db = owns_db

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str | None = None) -> Sealer | None:
        """A sealer over the key ring of the settings (its own small pool on the database
        of the data keys); None without a key ring: users' events then go in clear."""
        if not settings.encryption_keys:
            log.warning(
                "AYUSH_ENCRYPTION_KEYS is not set: users' text goes to Kafka, the archive "
                "and the event index in clear, and forgetting a user cannot shred it"
            )
            return None
        _, url, _ = settings.require_services()
        db = Database(database_url or url, pool_size=2)
        vault = Vault.from_setting(settings.encryption_keys)
        return cls(DataKeys(db, vault, settings.data_key_cache_s), owns_db=True)

    async def close(self) -> None:
        if self._owns_db:
            await self.keys.db.close()

    async def encode_value(self, envelope: Envelope[Any], plain: bytes) -> bytes:
        """The record value of `envelope` (`plain`: its JSON), its payload sealed when it
        carries a user's text."""
        if envelope.type not in SEALED_TYPES:
            return plain
        doc = orjson.loads(plain)
        body = doc["payload"]
        user = user_of(envelope.type, body)
        if user is None or sealed_part(body) is not None:  # no user, or sealed already
            return plain
        doc["payload"] = await self.seal_payload(envelope.tenant_id, user, envelope.id, body)
        return orjson.dumps(doc)

    async def seal_payload(
        self, tenant_id: uuid.UUID, user_id: str, event_id: uuid.UUID, body: dict[str, Any]
    ) -> dict[str, Any]:
        key_id, key = await self.keys.key_for(tenant_id, user_id)
        data = key.seal(orjson.dumps(body), event_context(event_id))
        return {"sealed": {"key": str(key_id), "data": base64.b64encode(data).decode()}}

    async def open_payload(self, event_id: Any, payload: Any) -> Any | None:
        """The payload in clear (as given when it is not sealed); None when its key is
        destroyed. Raises PermanentError for a payload that does not open."""
        part = sealed_part(payload)
        if part is None:
            return payload
        key_id, data = part
        try:
            key = await self.keys.key(uuid.UUID(key_id))
            raw = base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise PermanentError(f"sealed payload is malformed: {exc}") from exc
        if key is None:
            return None
        return orjson.loads(key.open(raw, event_context(event_id)))

    async def open_value(self, value: bytes | None) -> bytes | None:
        """The record value with its payload opened; as given when not sealed (or not an
        envelope: decoding says so). None when its key is destroyed."""
        if value is None or _MARK not in value:
            return value
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if not isinstance(doc, dict) or sealed_part(doc.get("payload")) is None:
            return value
        opened = await self.open_payload(doc.get("id"), doc["payload"])
        if opened is None:
            return None
        doc["payload"] = opened
        return orjson.dumps(doc)
