"""A TCP forwarder that can be cut: a service going away, as a process using it sees it.

It listens on 127.0.0.1 (from a background thread with its own loop, like
the fake vendors) and pipes each connection to the real service; `cut()`
closes every connection and stops listening, so new ones are refused.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

START_TIMEOUT_S = 10


class TcpForwarder:
    def __init__(self, url: str) -> None:
        """`url` is the service's (redis://host:port/… or unix:///path…)."""
        self.target = urlsplit(url)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def url(self, scheme: str = "redis") -> str:
        """The service's URL, through this forwarder."""
        path = self.target.path if self.target.scheme != "unix" else "/0"
        return urlunsplit((scheme, f"127.0.0.1:{self.port}", path, "", ""))

    def start(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        started.result(START_TIMEOUT_S)
        return self

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(START_TIMEOUT_S)

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target.scheme == "unix":
            service_r, service_w = await asyncio.open_unix_connection(self.target.path)
        else:
            service_r, service_w = await asyncio.open_connection(
                self.target.hostname, self.target.port
            )
        self._writers |= {writer, service_w}
        await asyncio.gather(
            _pipe(reader, service_w), _pipe(service_r, writer), return_exceptions=True
        )
        for each in (writer, service_w):
            each.close()
            self._writers.discard(each)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
