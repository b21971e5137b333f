"""What OpenAI's two chat APIs share on the wire: one session, the key, the proxy,
server-sent events and the mapping of failures to our two error kinds.

`OpenAIHttp.stream_events` posts a body to `{base_url}{path}` and hands each
JSON event of the stream to a callback; `openai.py` (chat completions) and
`openai_responses.py` (the Responses API) read their own events on top of it.
`post_json` is the same call without a stream (embeddings). A `Wire` says where
the calls go and how they sign in: OpenAI's by default, Azure's in azure.py.
Errors leave here as TransientError or PermanentError only.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import orjson

from infra.errors import PermanentError, TransientError
from infra.providers.http_errors import from_status

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OnEvent = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Wire:
    """Where an OpenAI-wire client posts (`{base}{path}{query}`) and how it signs in."""

    base: str
    auth: Mapping[str, str] = field(default_factory=dict)
    query: str = ""


def openai_wire(api_key: str | None = None, base_url: str | None = None) -> Wire:
    """OpenAI's own, or a compatible server's: OPENAI_API_KEY and OPENAI_BASE_URL when not given."""
    base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    # A local OpenAI-compatible server often needs no key; the header stays well-formed.
    key = api_key or os.environ.get("OPENAI_API_KEY") or "not-set"
    return Wire(base, {"Authorization": f"Bearer {key}"})


class OpenAIHttp:
    """Configured like the SDK, by OPENAI_API_KEY and OPENAI_BASE_URL when not given."""

    # The endpoint below the base URL that a subclass speaks ("/chat/completions" …).
    path: ClassVar[str]

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        wire: Wire | None = None,
    ) -> None:
        self.name = name
        wire = wire or openai_wire(api_key, base_url)
        self._url = wire.base.rstrip("/") + self.path + wire.query
        self._headers = {
            **wire.auth,
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._proxy = env_proxy(self._url)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # trust_env would read ~/.netrc and the proxy variables in a thread on
                # every request; the proxy is read once instead (see env_proxy).
                trust_env=False,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            )
        return self._session

    async def stream_events(self, body: dict[str, Any], on_event: OnEvent) -> None:
        """POST `body` and await `on_event` with each JSON event, until `[DONE]` or the end."""
        try:
            async with self._http().post(
                self._url, data=orjson.dumps(body), headers=self._headers, proxy=self._proxy
            ) as response:
                if response.status >= 400:
                    raise self.refusal(response.status, await response.read(), response.headers)
                async for data in sse_data(response.content):
                    if data == b"[DONE]":
                        break
                    await on_event(orjson.loads(data))
        except TimeoutError as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except aiohttp.ClientError as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{self.name}: unreadable stream: {exc}", status=502) from exc

    async def post_json(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` and return the JSON answer (no stream)."""
        headers = {**self._headers, "Accept": "application/json"}
        try:
            async with self._http().post(
                self._url, data=orjson.dumps(body), headers=headers, proxy=self._proxy
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self.refusal(response.status, raw, response.headers)
            answer = orjson.loads(raw)
        except TimeoutError as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except aiohttp.ClientError as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{self.name}: unreadable answer: {exc}", status=502) from exc
        if not isinstance(answer, dict):
            raise PermanentError(f"{self.name}: unexpected answer {str(answer)[:200]}", status=502)
        return answer

    def refusal(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> TransientError | PermanentError:
        """The error an answer of `status` >= 400 stands for; a vendor may say more."""
        return from_status(self.name, status, error_message(body), headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def sse_data(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The `data:` fields of a server-sent event stream, one per event."""
    buffer = b""
    data: list[bytes] = []
    async for piece in content.iter_any():
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
    if buffer.startswith(b"data:"):
        data.append(buffer[5:].strip())
    if data:
        yield b"\n".join(data)


def error_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:500] or "no message"
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error)[:500]


def env_proxy(url: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY for this URL unless NO_PROXY exempts it, as the SDK does."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(urllib.parse.urlsplit(url).scheme) or proxies.get("all")
