"""OpenAI and any OpenAI-compatible endpoint: chat completions over their wire protocol.

The chat path speaks HTTP + server-sent events itself, with aiohttp: the
official SDK builds typed objects for every request and chunk and costs
several milliseconds of CPU per call, more than the rest of a job. The wire
format is OpenAI's published one; embeddings still go through the SDK
(infra/embeddings/openai.py), off this per-call path.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
import orjson

from infra.errors import PermanentError, TransientError
from infra.providers import tokens
from infra.providers.base import (
    ChatRequest,
    Completion,
    Message,
    OnDelta,
    ToolCall,
)
from infra.providers.http_errors import from_status

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    """Configured like the SDK, by OPENAI_API_KEY and OPENAI_BASE_URL when not given."""

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self._url = base.rstrip("/") + "/chat/completions"
        # A local OpenAI-compatible server often needs no key; the header stays well-formed.
        key = api_key or _env_key() or "not-set"
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._proxy = _env_proxy(self._url)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # trust_env would read ~/.netrc and the proxy variables in a thread on
                # every request; the proxy is read once instead (see _env_proxy).
                trust_env=False,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            )
        return self._session

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        reading = _Reading()
        try:
            async with self._http().post(
                self._url,
                data=orjson.dumps(_params(request)),
                headers=self._headers,
                proxy=self._proxy,
            ) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise from_status(
                        self.name, response.status, _error_message(body), response.headers
                    )
                async for data in _sse_data(response.content):
                    if data == b"[DONE]":
                        break
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        raise PermanentError(f"{self.name}: {_error_message(data)}", status=502)
                    text = reading.add(chunk)
                    if text:
                        await on_delta(text)
        except TimeoutError as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except aiohttp.ClientError as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{self.name}: unreadable stream: {exc}", status=502) from exc
        return reading.completion(request)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Reading:
    """The pieces of one streamed answer, put together."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> str:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        text = ""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.parts.append(content)
                text += content
            for call in delta.get("tool_calls") or ():
                # A call arrives in pieces: id and name first, then the arguments.
                slot = self.calls.setdefault(
                    call.get("index", 0), {"id": "", "name": "", "args": ""}
                )
                function = call.get("function") or {}
                if call.get("id"):
                    slot["id"] = call["id"]
                slot["name"] += function.get("name") or ""
                slot["args"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return text

    def completion(self, request: ChatRequest) -> Completion:
        text = "".join(self.parts)
        tool_calls = [
            ToolCall(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(self.calls.items())
        ]
        if self.usage is not None:
            details = self.usage.get("prompt_tokens_details") or {}
            return Completion(
                text,
                self.finish_reason,
                int(self.usage.get("prompt_tokens") or 0),
                int(self.usage.get("completion_tokens") or 0),
                tool_calls=tool_calls,
                cached_input_tokens=int(details.get("cached_tokens") or 0),
            )
        answer = Message("assistant", text, tool_calls)
        return Completion(
            text,
            self.finish_reason,
            tokens.count_request(request),
            tokens.count_text(text) + tokens.count_tool_calls(answer),
            usage_estimated=True,
            tool_calls=tool_calls,
        )


async def _sse_data(content: aiohttp.StreamReader) -> Any:
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


def _error_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:500] or "no message"
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error)[:500]


def _env_proxy(url: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY for this URL unless NO_PROXY exempts it, as the SDK does."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(urllib.parse.urlsplit(url).scheme) or proxies.get("all")


def _env_key() -> str | None:
    return os.environ.get("OPENAI_API_KEY")


def _message_param(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": _content(m)}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _content(m: Message) -> str | list[dict[str, Any]]:
    if not m.parts:
        return m.content
    return [
        {"type": "text", "text": p}
        if isinstance(p, str)
        else {
            "type": "image_url",
            "image_url": {"url": p.url, **({"detail": p.detail} if p.detail else {})},
        }
        for p in m.parts
    ]


def _params(request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [_message_param(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            params[name] = value
    if request.response_format:
        params["response_format"] = request.response_format
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.stop:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                    **({"description": t.description} if t.description else {}),
                },
            }
            for t in request.tools
        ]
    if request.forced_tool:
        params["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
    elif request.tool_choice:
        params["tool_choice"] = request.tool_choice
    return params
