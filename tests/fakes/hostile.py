"""Servers that answer the way an attacker's (or a broken) server would.

`HostileHttp`: an HTTP server whose answers never end or arrive a byte at a time.
    /huge      200 with an endless body, 64 KiB a write
    /trickle   200 whose body comes one byte every 50 ms, for ever
`BannerServer`: a TCP service that is not SMTP (or is a slow one): it greets every
connection with `banner`, then, when `trickle` is set, sends an SMTP continuation line
every 50 ms for ever. It counts connections.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from tests.fakes.server import BackgroundServer

CHUNK = b"x" * 65536
TRICKLE_S = 0.05


class HostileHttp(BackgroundServer):
    name = "hostile http server"

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0  # body bytes written, over all answers

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/trickle", self._trickle)
        return app

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(CHUNK)
                self.sent += len(CHUNK)
        except (ConnectionError, RuntimeError):  # the client went away
            return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x")
                self.sent += 1
                await asyncio.sleep(TRICKLE_S)
        except (ConnectionError, RuntimeError):
            return response


class BannerServer:
    def __init__(self, banner: bytes, *, trickle: bool = False) -> None:
        self.banner = banner
        self.trickle = trickle
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> BannerServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        self._server.close()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            writer.write(self.banner)
            await writer.drain()
            while self.trickle:
                writer.write(b"220-still here\r\n")
                await writer.drain()
                await asyncio.sleep(TRICKLE_S)
            await reader.read(1024)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
