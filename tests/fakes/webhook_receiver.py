"""A subscriber's endpoint: answers each path as planned (ok, fail, slow, hang) and keeps what
it received, with the time it arrived."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.server import BackgroundServer


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic()
    headers: dict[str, str]
    body: bytes


class WebhookReceiver(BackgroundServer):
    name = "webhook receiver"

    def __init__(self) -> None:
        super().__init__()
        self.received: dict[str, list[Received]] = defaultdict(list)
        # Per path, what to answer, in order; the last one answers every request after.
        self.plans: dict[str, list[str]] = {}

    def plan(self, path: str, *answers: str) -> str:
        """`answers`: "ok" (200), "fail" (500), "slow:<s>" (200 after s seconds), "hang"."""
        self.plans[path] = list(answers)
        return f"{self.url}/{path}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        self.received[path].append(Received(time.monotonic(), dict(request.headers), body))
        plan = self.plans.get(path, ["ok"])
        answer = plan.pop(0) if len(plan) > 1 else plan[0]
        if answer == "fail":
            return web.Response(status=500, text="receiver failed")
        if answer == "hang":
            await asyncio.sleep(3600)
        if answer.startswith("slow:"):
            await asyncio.sleep(float(answer.removeprefix("slow:")))
        return web.Response(status=200, text="thanks")
