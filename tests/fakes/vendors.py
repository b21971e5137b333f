"""A local HTTP server speaking the slices of Slack, Discord, Telegram, GitHub and
Notion that the connectors use, counting every call.

Behaviour is chosen by the request, so a worker in another process can ask for it:
    Slack channel "RATE…"       first call per channel: 429 with Retry-After: 1
    Slack channel "SLOW…"       answers after 1.5 s
    Slack channel "HTML…"       200 with an HTML page (a proxy's or a portal's), not JSON
    Slack token  "xoxb-bad"     {"ok": false, "error": "invalid_auth"} (Slack's way)
    Slack token  revoked by auth.revoke: {"ok": false, "error": "token_revoked"} afterwards
    Slack token  "xoxb-keep…"   auth.revoke answers {"ok": false, "error": "not_allowed_token_type"}
    Telegram text "ODD…"        200 with a `result` of a shape no client expects (a string)
    GitHub repo  "missing"      404 Not Found
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import BackgroundServer


@dataclass
class VendorCall:
    vendor: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class FakeVendors(BackgroundServer):
    name = "fake vendor server"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[VendorCall] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.revoked: set[str] = set()  # Authorization headers revoked at auth.revoke

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/slack/api/chat.postMessage", self._slack)
        app.router.add_post("/slack/api/auth.revoke", self._slack_revoke)
        app.router.add_delete("/github/installation/token", self._github_revoke)
        app.router.add_post("/discord/webhooks/{id}/{token}", self._discord)
        app.router.add_post("/telegram/{bot}/sendMessage", self._telegram)
        app.router.add_post("/github/repos/{owner}/{repo}/issues", self._github_issue)
        app.router.add_post(
            "/github/repos/{owner}/{repo}/issues/{n}/comments", self._github_comment
        )
        app.router.add_post("/notion/v1/pages", self._notion)
        app.router.add_route("*", "/http/{tail:.*}", self._http)
        return app

    def env(self) -> dict[str, str]:
        return {
            "SLACK_API_URL": f"{self.url}/slack/api",
            "DISCORD_API_URL": f"{self.url}/discord",
            "TELEGRAM_API_URL": f"{self.url}/telegram",
            "GITHUB_API_URL": f"{self.url}/github",
            "NOTION_API_URL": f"{self.url}/notion",
        }

    def matching(self, vendor: str, needle: str) -> list[VendorCall]:
        """Calls to `vendor` whose path or body mentions `needle`."""
        with self._lock:
            return [c for c in self.calls if c.vendor == vendor and needle in f"{c.path}{c.body}"]

    async def _record(self, vendor: str, request: web.Request) -> tuple[Any, int]:
        body = await request.json() if request.can_read_body else None
        with self._lock:
            self.calls.append(VendorCall(vendor, request.path_qs, body, dict(request.headers)))
            key = f"{vendor}:{request.path}:{body!r}"
            self._seen[key] += 1
            return body, self._seen[key]

    async def _slack(self, request: web.Request) -> web.Response:
        body, nth = await self._record("slack", request)
        channel = str(body.get("channel", ""))
        if request.headers.get("Authorization") == "Bearer xoxb-bad":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        with self._lock:
            revoked = request.headers.get("Authorization") in self.revoked
        if revoked:
            return web.json_response({"ok": False, "error": "token_revoked"})
        if channel.startswith("RATE") and nth == 1:
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        if channel.startswith("SLOW"):
            await asyncio.sleep(1.5)
        if channel.startswith("HTML"):
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        return web.json_response({"ok": True, "channel": channel, "ts": f"{time.time():.6f}"})

    async def _slack_revoke(self, request: web.Request) -> web.Response:
        """auth.revoke: the token in the Authorization header stops working."""
        await self._record("slack", request)
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer xoxb-keep"):  # a token Slack will not revoke
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        with self._lock:
            if authorization in self.revoked:
                return web.json_response({"ok": False, "error": "token_revoked"})
            self.revoked.add(authorization)
        return web.json_response({"ok": True, "revoked": True})

    async def _github_revoke(self, request: web.Request) -> web.Response:
        """DELETE /installation/token: 204, and the token stops working."""
        await self._record("github", request)
        with self._lock:
            self.revoked.add(request.headers.get("Authorization", ""))
        return web.Response(status=204)

    async def _discord(self, request: web.Request) -> web.Response:
        await self._record("discord", request)
        return web.json_response({"id": "1100", "channel_id": "900"})

    async def _telegram(self, request: web.Request) -> web.Response:
        body, _ = await self._record("telegram", request)
        if str(body.get("text", "")).startswith("ODD"):
            return web.json_response({"ok": True, "result": "sent"})
        return web.json_response({"ok": True, "result": {"message_id": 42}})

    async def _github_issue(self, request: web.Request) -> web.Response:
        await self._record("github", request)
        if request.match_info["repo"] == "missing":
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(
            {"id": 1, "number": 12, "html_url": "https://github.test/i/12"}, status=201
        )

    async def _github_comment(self, request: web.Request) -> web.Response:
        await self._record("github", request)
        return web.json_response({"id": 77, "html_url": "https://github.test/c/77"}, status=201)

    async def _notion(self, request: web.Request) -> web.Response:
        await self._record("notion", request)
        return web.json_response({"object": "page", "id": "page-1", "url": "https://notion.test/p"})

    async def _http(self, request: web.Request) -> web.Response:
        body, _ = await self._record("http", request)
        return web.json_response({"echo": body, "method": request.method})
