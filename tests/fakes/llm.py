"""A local HTTP server that speaks OpenAI's and Anthropic's chat APIs.

The real SDKs talk to it, so our streaming, retry and error paths run for
real. Behaviour is chosen by the model name, so any process (a worker
started as a subprocess too) can ask for it:

    gpt-fake                 answers "reply to: <last user message>"
    gpt-fake@delay=2000      waits 2 s before answering
    gpt-fake@fail=2          answers 500 to the first 2 calls of one conversation
    gpt-fake@status=429@retry_after=1@fail=1   first call 429 with Retry-After: 1
    gpt-fake@always=500      always 500;  @always=400: always 400
    gpt-fake@nousage         a stream without a usage chunk

The same directives work with `claude-fake…`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    api: str
    model: str
    last_user: str
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    system: str = ""  # system messages joined: shows what context a worker injected


def _directives(model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in model.split("@")[1:]:
        name, _, value = part.partition("=")
        out[name] = value
    return out


def _reply_words(last_user: str) -> list[str]:
    return f"reply to: {last_user}".split(" ")


class FakeLLMServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._openai_chat)
            app.router.add_post("/v1/messages", self._anthropic_messages)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-llm", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake LLM server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def calls_for(self, text: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.last_user == text]

    # behaviour ---------------------------------------------------------------
    async def _prologue(
        self, api: str, body: dict[str, Any], request: web.Request
    ) -> tuple[web.Response | None, str]:
        model = str(body.get("model", ""))
        last_user = ""
        for message in body.get("messages", []):
            if message.get("role") == "user":
                content = message.get("content")
                last_user = content if isinstance(content, str) else json.dumps(content)
        with self._lock:
            system = "\n".join(
                str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"
            ) or str(body.get("system") or "")
            call = Call(api, model, last_user, time.monotonic(), dict(request.headers), system)
            self.calls.append(call)
            self._attempts[(model, last_user)] += 1
            attempt = self._attempts[(model, last_user)]
        d = _directives(model)
        if "delay" in d:
            await asyncio.sleep(int(d["delay"]) / 1000)
        status = None
        if "always" in d:
            status = int(d["always"])
        elif "fail" in d and attempt <= int(d["fail"]):
            status = int(d.get("status", "500"))
        if status is None:
            return None, last_user
        headers = {"retry-after": d["retry_after"]} if "retry_after" in d else {}
        if api == "openai":
            payload: dict[str, Any] = {
                "error": {"message": f"fake failure {status}", "type": "server_error", "code": None}
            }
        else:
            payload = {
                "type": "error",
                "error": {"type": "api_error", "message": f"fake failure {status}"},
            }
        return web.json_response(payload, status=status, headers=headers), last_user

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        failure, last_user = await self._prologue("openai", body, request)
        if failure is not None:
            return failure
        model = body["model"]
        words = _reply_words(last_user)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        text = " ".join(words)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def chunk(data: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        await chunk(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            await chunk(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            )
        await chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        if include_usage and "nousage" not in _directives(model):
            await chunk({**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        failure, last_user = await self._prologue("anthropic", body, request)
        if failure is not None:
            return failure
        model = body["model"]
        words = _reply_words(last_user)
        input_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        input_tokens += len(str(body.get("system", "")).split())
        text = " ".join(words)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": len(words)},
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(
                f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
            )

        await event(
            "message_start",
            {
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                }
            },
        )
        await event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            await event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
        await event("content_block_stop", {"index": 0})
        await event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        )
        await event("message_stop", {})
        await response.write_eof()
        return response
