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
    gpt-fake@pace=30         30 ms between streamed words
    gpt-fake@cached=3        reports 3 of the prompt's tokens as read from the prompt cache
                             (claude-fake: only for a request with a `cache_control` block)
    gpt-fake@cut             the stream ends after its first word (no finish, no [DONE])
    claude-fake@cache_write=5  reports 5 of the prompt's tokens as written to the prompt
                             cache (for a request with a `cache_control` block)
    gpt-fake@tool            calls the first tool offered (or the forced one) with
                             {"echo": <last user message>}
    gpt-fake@plan            calls the tools a user message's `plan: [...]` line lists, one a
                             turn, then answers (`@plan@forever`: never stops calling)

POST /v1/embeddings answers deterministic 8-dimensional vectors (or `dimensions`).
POST /v1/responses speaks OpenAI's Responses API (tests/fakes/llm_responses.py),
recording calls with api="responses".

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

from tests.fakes import llm_responses
from tests.fakes.server import BackgroundServer


@dataclass
class Call:
    api: str
    model: str
    last_user: str
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    system: str = ""  # system messages joined: shows what context a worker injected


def _directives(model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in model.split("@")[1:]:
        name, _, value = part.partition("=")
        out[name] = value
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content or () if b.get("type") == "text"]
    return " ".join(texts) if texts else json.dumps(content)


def _seen_in_messages(body: dict[str, Any]) -> tuple[str, str]:
    """(the last user message's text, the system messages' text) of a chat body."""
    last_user = ""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            last_user = _text_of(message.get("content"))
    system = "\n".join(
        _text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"
    ) or _text_of(body.get("system") or "")
    return last_user, system


def _reply_words(last_user: str) -> list[str]:
    return f"reply to: {last_user}".split(" ")


class FakeLLMServer(BackgroundServer):
    name = "fake LLM server"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        # The vendors take long-context requests of many megabytes (aiohttp's default is 1 MB).
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        app.router.add_post("/v1/responses", self._openai_responses)
        return app

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen = llm_responses.seen(body)
        failure, last_user = await self._prologue("responses", body, request, seen)
        if failure is not None:
            return failure
        directives = _directives(str(body.get("model", "")))
        return await llm_responses.answer(request, body, _reply_words(last_user), directives)

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def calls_for(self, text: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.last_user == text]

    # behaviour ---------------------------------------------------------------
    async def _prologue(
        self,
        api: str,
        body: dict[str, Any],
        request: web.Request,
        seen: tuple[str, str] | None = None,
    ) -> tuple[web.Response | None, str]:
        """Record the call and apply the model's directives; a failure answer, if any.

        `seen` is (last user text, system text) where the body has no `messages`.
        """
        model = str(body.get("model", ""))
        last_user, system = seen or _seen_in_messages(body)
        with self._lock:
            self.calls.append(
                Call(api, model, last_user, time.monotonic(), dict(request.headers), body, system)
            )
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
        if api != "anthropic":
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
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        cached = _directives(model).get("cached")
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": min(int(cached), prompt_tokens)}
        call = _tool_call(body, last_user)
        if call is not None:
            return await _openai_tool_answer(request, body, call, usage)
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
        pace = int(_directives(model).get("pace", "0")) / 1000
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            if pace:
                await asyncio.sleep(pace)
            await chunk(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            )
            if "cut" in _directives(model):  # the connection ends mid-answer
                await response.write_eof()
                return response
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
        usage = _anthropic_usage(body, input_tokens)
        call = _tool_call(body, last_user)
        if call is not None:
            return await _anthropic_tool_answer(request, body, call, usage)
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
                    "usage": {**usage, "output_tokens": len(words)},
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
                    "usage": {**usage, "output_tokens": 1},
                }
            },
        )
        await event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        pace = int(_directives(model).get("pace", "0")) / 1000
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            if pace:
                await asyncio.sleep(pace)
            await event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
            if "cut" in _directives(model):  # the connection ends mid-answer
                await response.write_eof()
                return response
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

    async def _openai_embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        failure, _ = await self._prologue(
            "openai", {"model": body["model"], "messages": [{"role": "user", "content": texts[0]}]},
            request,
        )  # fmt: skip
        if failure is not None:
            return failure
        dim = int(body.get("dimensions") or 8)
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(text, dim)}
            for i, text in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _fake_vector(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97 for i in range(dim)]


def _tool_call(body: dict[str, Any], last_user: str) -> tuple[str, str, str] | None:
    """(tool name, JSON arguments, call id) when the model was told to call a tool."""
    directives = _directives(str(body.get("model", "")))
    if "plan" in directives and body.get("tools"):
        return _planned_call(body, "forever" in directives)
    if "tool" not in directives or not body.get("tools"):
        return None
    if any(m.get("role") == "tool" for m in body.get("messages", [])) or any(
        isinstance(m.get("content"), list)
        and any(b.get("type") == "tool_result" for b in m["content"])
        for m in body.get("messages", [])
    ):
        return None  # the tool already answered: reply in text
    choice = body.get("tool_choice") or {}
    first = body["tools"][0]
    name = first.get("function", first).get("name")
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name") or name
    return name, json.dumps({"echo": last_user}), "call_fake"


def _planned_call(body: dict[str, Any], forever: bool) -> tuple[str, str, str] | None:
    """`@plan`: the next call of the plan a user message carries, after the calls made.

    A user message's line `plan: [{"name": ..., "arguments": {...}}, ...]` lists the
    calls in order, one per model turn; then the model answers in text (with
    `@forever` it repeats the last call instead). An argument "$.a.b" is read from
    the last tool result (JSON), as a model reads an id it was given.
    """
    plan: list[dict[str, Any]] = []
    results: list[Any] = []
    made = 0
    for message in body.get("messages", []):
        content = message.get("content")
        if message.get("role") == "user":
            for line in _text_of(content).splitlines():
                if line.startswith("plan:"):
                    plan = json.loads(line.removeprefix("plan:"))
            for block in content if isinstance(content, list) else ():
                if block.get("type") == "tool_result":
                    results.append(_text_of(block.get("content")))
        elif message.get("role") == "tool":
            results.append(_text_of(content))
        elif message.get("role") == "assistant":
            blocks = content if isinstance(content, list) else ()
            if message.get("tool_calls") or any(b.get("type") == "tool_use" for b in blocks):
                made += 1
    if not plan or (made >= len(plan) and not forever):
        return None
    step = plan[min(made, len(plan) - 1)]
    last = json.loads(results[-1]) if results else {}
    arguments = {k: _resolved(v, last) for k, v in step.get("arguments", {}).items()}
    return step["name"], json.dumps(arguments), f"call_{made + 1}"


def _resolved(value: Any, last: Any) -> Any:
    if not (isinstance(value, str) and value.startswith("$.")):
        return value
    for key in value[2:].split("."):
        last = last[key]
    return last


async def _openai_tool_answer(
    request: web.Request, body: dict[str, Any], call: tuple[str, str, str], usage: dict[str, Any]
) -> web.StreamResponse:
    name, arguments, call_id = call
    base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": arguments}}
            ],
        }  # fmt: skip
        return web.json_response(
            {**base, "object": "chat.completion", "usage": usage,
             "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
        )  # fmt: skip
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    half = len(arguments) // 2
    pieces = [
        {"index": 0, "id": call_id, "type": "function",
         "function": {"name": name, "arguments": ""}},
        {"index": 0, "function": {"arguments": arguments[:half]}},
        {"index": 0, "function": {"arguments": arguments[half:]}},
    ]  # fmt: skip
    for piece in pieces:
        chunk = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}],
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    final = {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    }
    await response.write(f"data: {json.dumps(final)}\n\n".encode())
    if (body.get("stream_options") or {}).get("include_usage"):
        tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        await response.write(f"data: {json.dumps(tail)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _has_cache_control(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(v) for v in value)
    return False


def _anthropic_usage(body: dict[str, Any], input_tokens: int) -> dict[str, int]:
    """Anthropic's input usage: a request with a cache breakpoint reads (`@cached`) and
    writes (`@cache_write`) prompt-cache tokens, which `input_tokens` leaves out."""
    read = written = 0
    if _has_cache_control([body.get("system"), body.get("messages"), body.get("tools")]):
        d = _directives(str(body.get("model", "")))
        read, written = int(d.get("cached", "0")), int(d.get("cache_write", "0"))
    return {
        "input_tokens": input_tokens,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


async def _anthropic_tool_answer(
    request: web.Request, body: dict[str, Any], call: tuple[str, str, str], usage: dict[str, int]
) -> web.StreamResponse:
    name, arguments, call_id = call
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)

    async def event(kind: str, data: dict[str, Any]) -> None:
        await response.write(
            f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()
        )

    await event("message_start", {"message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }})  # fmt: skip
    await event("content_block_start", {"index": 0, "content_block": {
        "type": "tool_use", "id": call_id.replace("call_", "toolu_"), "name": name, "input": {},
    }})  # fmt: skip
    half = len(arguments) // 2
    for part in (arguments[:half], arguments[half:]):
        await event("content_block_delta", {
            "index": 0, "delta": {"type": "input_json_delta", "partial_json": part},
        })  # fmt: skip
    await event("content_block_stop", {"index": 0})
    await event("message_delta", {
        "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 7},
    })  # fmt: skip
    await event("message_stop", {})
    await response.write_eof()
    return response
