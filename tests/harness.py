"""Running the platform's processes for tests, and waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from infra.local_stack.process import free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout_s: float = 20.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def early_in_a_minute() -> bool:
    """For `eventually`: a burst counted per minute must not straddle two windows."""
    return datetime.now(UTC).second < 45


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Platform:
    """An ingress and workers as real processes, in one topic namespace."""

    env: dict[str, str]
    logs: Path
    procs: list[Proc] = field(default_factory=list)
    url: str = ""

    def spawn(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}-{len(self.procs)}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                [sys.executable, "-m", "ayush.cli", *args],
                cwd=ROOT,
                env={**os.environ, **self.env, **(extra_env or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_ingress(self) -> Proc:
        return self.start_ingress_with(None)

    def start_ingress_with(self, extra_env: dict[str, str] | None) -> Proc:
        port = free_port()
        proc = self.spawn("ingress", "ingress", "--port", str(port), extra_env=extra_env)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"ingress died:\n{proc.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ingress not ready:\n{proc.tail()}")

    def start_worker(self, group: str, extra_env: dict[str, str] | None = None) -> Proc:
        proc = self.spawn(group, "worker", group, extra_env=extra_env)
        marker = f"worker {group} ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"worker {group} died:\n{proc.tail()}")
            if marker in proc.log.read_text(errors="replace"):
                return proc
            time.sleep(0.05)
        raise RuntimeError(f"worker {group} not ready:\n{proc.tail()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate(15)

    @contextmanager
    def serving(self, *groups: str) -> Iterator[Platform]:
        """The ingress and one worker per group; every process is stopped on the way out,
        also when one of them fails to start."""
        try:
            self.start_ingress()
            for group in groups:
                self.start_worker(group)
            yield self
        finally:
            self.stop()


def sse_events(text: str) -> list[dict[str, Any]]:
    """Parse a Server-Sent Events body into a list of {id, event, data} dicts."""
    import json

    events = []
    for block in text.split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                event["data"] = json.loads(value)
            elif name in ("id", "event"):
                event[name] = value
        if "event" in event:
            events.append(event)
    return events


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def raw_http(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterable[bytes] = (),
    timeout_s: float = 10.0,
) -> RawAnswer:
    """One HTTP/1.1 exchange over a bare socket, for what clients will not send: headers that
    promise a body that never comes, or a chunked body that never ends. The answer must come
    within `timeout_s` of the last byte sent, body or not."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the server answered and hung up before taking it all: read the answer
        async with asyncio.timeout(timeout_s):
            status_line = await reader.readline()
            answer_headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                answer_headers[name.strip().lower()] = value.strip()
            length = int(answer_headers.get("content-length", "0"))
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return RawAnswer(int(status_line.split()[1]), answer_headers, body)


def chunked(data: bytes, size: int = 16 * 1024, *, end: bool = True) -> Iterator[bytes]:
    """`data` in HTTP/1.1 chunked framing; without the last chunk if not `end`."""
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    if end:
        yield b"0\r\n\r\n"
