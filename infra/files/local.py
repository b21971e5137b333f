"""A file store in a local folder: the development default, no service needed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from infra.errors import PermanentError, TransientError


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise PermanentError(f"invalid file key {key!r}")
        return self._root / key

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a file, a crash leaves none.
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_bytes(data)
            partial.replace(path)
        except OSError as exc:
            raise TransientError(f"cannot write {path}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise PermanentError(f"no file {key!r}") from exc
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc}") from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def list(self, prefix: str = "") -> list[str]:
        def walk() -> list[str]:
            if not self._root.exists():
                return []
            keys = (
                p.relative_to(self._root).as_posix()
                for p in self._root.rglob("*")
                if p.is_file() and not p.name.endswith(".partial")
            )
            return sorted(k for k in keys if k.startswith(prefix))

        return await asyncio.to_thread(walk)

    async def close(self) -> None:
        return None
