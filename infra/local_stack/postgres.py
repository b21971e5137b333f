"""Postgres with pgvector from the pgserver wheel."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class LocalPostgres:
    """A pgserver instance: Postgres listening on a unix socket in its data folder."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir at import; its
            # fallback (no XDG_RUNTIME_DIR, as under CI) is fine for us.
            warnings.simplefilter("ignore")
            import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": the server stops when the last process using it exits.
        self._server: Any = pgserver.get_server(data_dir.resolve(), cleanup_mode="stop")

    @property
    def url(self) -> str:
        # pgserver gives postgresql://postgres:@/postgres?host=<socket dir>
        parts = urlsplit(self._server.get_uri())
        return f"postgresql+asyncpg://postgres@/postgres?{parts.query}"

    def stop(self) -> None:
        self._server.cleanup()
