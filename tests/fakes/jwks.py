"""A token issuer's key endpoint: JWKS documents the test sets, and how often each was read."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.server import BackgroundServer


class FakeJwks(BackgroundServer):
    name = "fake jwks"

    def __init__(self) -> None:
        super().__init__()
        self.sets: dict[str, list[dict[str, Any]]] = {}
        self.fetches: Counter[str] = Counter()
        self.failing: set[str] = set()

    def publish(self, name: str, *keys: dict[str, Any]) -> str:
        """Serves these public keys at the returned URL (replacing what was there)."""
        self.sets[name] = list(keys)
        return f"{self.url}/{name}/jwks.json"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}/jwks.json", self._jwks)
        return app

    async def _jwks(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.fetches[name] += 1
        if name in self.failing:
            return web.json_response({"error": "down"}, status=503)
        if name not in self.sets:
            return web.json_response({"error": "no such set"}, status=404)
        return web.json_response({"keys": self.sets[name]})
