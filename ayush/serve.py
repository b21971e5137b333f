"""Serving the ingress with uvicorn, with a shutdown that ends open streams first.

uvicorn waits for open connections before it stops; a live event stream
would hold it until the deadline and then be cut. On SIGTERM/SIGINT the open
streams get a final `shutdown` event and end, so clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn

from infra.settings import Settings
from infra.telemetry.tracing import setup_tracing
from producers.ingress import create_app
from producers.ingress.observability import OpenStreams


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, streams: OpenStreams) -> None:
        super().__init__(config)
        self._streams = streams
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._streams.close_all)
        super().handle_exit(sig, frame)


def serve_ingress(settings: Settings, host: str, port: int) -> None:
    flush_traces = setup_tracing(settings, "ingress")
    streams = OpenStreams()
    config = uvicorn.Config(
        create_app(settings, streams), host=host, port=port, loop="uvloop",
        log_level="warning", access_log=False,
        # The client's address is the peer's: X-Forwarded-For is read only from the proxies
        # of AYUSH_TRUSTED_PROXIES (producers.ingress.client_address), never by uvicorn,
        # which would believe it from any local peer.
        proxy_headers=False,
        log_config=None,  # uvicorn's records go through our (JSON) root handler
        timeout_graceful_shutdown=max(1, int(settings.shutdown_deadline_s)),
    )  # fmt: skip
    try:
        _Server(config, streams).run()
    finally:
        flush_traces()
