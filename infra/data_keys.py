"""Per-user data keys: get or create a user's key, find one by id, destroy one.

A data key is 32 random bytes, stored sealed by the key ring (`user_keys`, one row per
user of a tenant). Destroying a key deletes its row: every copy of what it sealed, in
Kafka, the archive and the event index, is unreadable from then on (crypto-shredding).

Keys are cached in the process for `data_key_cache_s` (a few seconds): a key destroyed
by another process may still open events here for that long, in memory only, never at
rest. The process that destroys a key forgets it at once. Reading a user's event under a
key this process has not seen makes that key the one it seals the user's events with, so
a worker's answer to a user who came back right after being forgotten is sealed with the
new key, not the destroyed one still cached; an event sealed with the destroyed key in
those seconds (by another process) is unreadable, as the forgotten user's are.
"""

from __future__ import annotations

import time
import uuid

from infra.db.engine import Database
from infra.db.models import utcnow
from infra.db.user_keys import (
    UserKey,
    delete_user_key,
    find_user_key,
    get_user_key,
    insert_user_key,
    user_key_context,
)
from infra.vault import DataKey, Sealed, Vault

# Entries past this are dropped all at once: a cache, not a copy of the table.
MAX_CACHED = 100_000


class DataKeys:
    def __init__(self, db: Database, vault: Vault, cache_s: float = 5.0) -> None:
        self.db = db
        self._vault = vault
        self._cache_s = cache_s
        self._by_user: dict[tuple[uuid.UUID, str], tuple[float, uuid.UUID, DataKey]] = {}
        self._by_id: dict[uuid.UUID, tuple[float, DataKey]] = {}
        # Destroyed keys never come back (ids are random): remembered for good.
        self._destroyed: set[uuid.UUID] = set()

    async def key_for(self, tenant_id: uuid.UUID, user_id: str) -> tuple[uuid.UUID, DataKey]:
        """The user's key, made on first use. Concurrent makers (in any process) agree:
        the first insert wins and everyone reads that row."""
        now = time.monotonic()
        cached = self._by_user.get((tenant_id, user_id))
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        row = await find_user_key(self.db, tenant_id, user_id)
        if row is None:
            fresh = UserKey(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                user_id=user_id,
                sealed_key=b"",
                vault_key_id="",
                created_at=utcnow(),
            )
            sealed = self._vault.seal(DataKey.generate(), user_key_context(fresh))
            fresh.sealed_key, fresh.vault_key_id = sealed.data, sealed.key_id
            if await insert_user_key(self.db, fresh):
                row = fresh
            else:
                row = await find_user_key(self.db, tenant_id, user_id)
                if row is None:  # made and destroyed in between: make it again
                    return await self.key_for(tenant_id, user_id)
        key = self._open(row)
        self._remember(now, row.id, key, (tenant_id, user_id))
        return row.id, key

    async def key(self, key_id: uuid.UUID) -> DataKey | None:
        """The key by id; None once it is destroyed."""
        if key_id in self._destroyed:
            return None
        now = time.monotonic()
        cached = self._by_id.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await get_user_key(self.db, key_id)
        if row is None:
            self._forget(key_id)
            return None
        key = self._open(row)
        # A user has one key at a time: the one found is the one to seal with from now on
        # (what a worker writes after reading a user's event then never goes out under a
        # key that was destroyed meanwhile and is still in this cache).
        self._remember(now, row.id, key, (row.tenant_id, row.user_id))
        return key

    async def destroy(self, tenant_id: uuid.UUID, user_id: str) -> bool:
        """Delete the user's key (True), or find none (False): idempotent."""
        self._by_user.pop((tenant_id, user_id), None)
        key_id = await delete_user_key(self.db, tenant_id, user_id)
        if key_id is not None:
            self._forget(key_id)
        return key_id is not None

    def _open(self, row: UserKey) -> DataKey:
        plain = self._vault.open(Sealed(row.vault_key_id, row.sealed_key), user_key_context(row))
        return DataKey(plain)

    def _remember(
        self,
        now: float,
        key_id: uuid.UUID,
        key: DataKey,
        user: tuple[uuid.UUID, str] | None,
    ) -> None:
        if len(self._by_id) > MAX_CACHED or len(self._by_user) > MAX_CACHED:
            self._by_id.clear()
            self._by_user.clear()
        until = now + self._cache_s
        self._by_id[key_id] = (until, key)
        if user is not None:
            self._by_user[user] = (until, key_id, key)

    def _forget(self, key_id: uuid.UUID) -> None:
        self._by_id.pop(key_id, None)
        if len(self._destroyed) > MAX_CACHED:
            self._destroyed.clear()
        self._destroyed.add(key_id)
