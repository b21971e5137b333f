"""The file store on S3: the shared object store adapter (infra.s3), under a key prefix."""

from __future__ import annotations

from infra.errors import PermanentError
from infra.s3 import ObjectStore
from infra.settings import Settings


class S3FileStore:
    def __init__(
        self, settings: Settings, bucket: str | None = None, prefix: str = "files/"
    ) -> None:
        self._objects = ObjectStore(settings, bucket)
        self._prefix = prefix
        self._started = False

    async def _store(self) -> ObjectStore:
        if not self._started:
            await self._objects.start()
            await self._objects.ensure_bucket()
            self._started = True
        return self._objects

    async def put(self, key: str, data: bytes) -> None:
        await (await self._store()).put(self._prefix + key, data)

    async def get(self, key: str) -> bytes:
        data = await (await self._store()).get(self._prefix + key)
        if data is None:
            raise PermanentError(f"no file {key!r}")
        return data

    async def delete(self, key: str) -> None:
        await (await self._store()).delete(self._prefix + key)

    async def list(self, prefix: str = "") -> list[str]:
        store = await self._store()
        return [k[len(self._prefix) :] async for k in store.list(self._prefix + prefix)]

    async def close(self) -> None:
        if self._started:
            await self._objects.close()
            self._started = False
