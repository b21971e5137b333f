"""The file store port: bytes by key."""

from __future__ import annotations

from typing import Protocol


class FileStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes:
        """The bytes under `key`; PermanentError if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Removes `key`; a missing key is not an error."""
        ...

    async def list(self, prefix: str = "") -> list[str]: ...

    async def close(self) -> None: ...
