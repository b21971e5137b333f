"""A local HTTP server that speaks AWS Bedrock runtime's wire protocol.

    POST /model/{modelId}/converse          Converse (JSON)
    POST /model/{modelId}/converse-stream   ConverseStream (application/vnd.amazon.eventstream)
    POST /model/{modelId}/invoke            InvokeModel: Titan and Cohere embeddings

aioboto3 (botocore) drives it, so SigV4 signing, the event-stream decoder
and botocore's error parsing run for real. A request without a SigV4
Authorization header is refused as AWS refuses it. Behaviour is chosen by
directives after the model id, as in tests/fakes/llm.py:

    anthropic.claude-fake                 answers "reply to: <last user text>"
    ...@fail=2@status=429@retry_after=1   the first 2 calls of a conversation fail so
    ...@always=400                        every call fails (400 ValidationException,
                                          429 ThrottlingException, 500 InternalServerException,
                                          503 ServiceUnavailableException, 403 AccessDenied...)
    ...@tool                              calls the first (or the forced) tool
    ...@cached=3                          3 input tokens read from the prompt cache
    ...@delay=2000                        waits 2 s before answering
    ...@cut                               the stream ends inside a frame
    ...@streamerror                       the stream breaks off with a modelStreamErrorException
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import BackgroundServer

ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame of the event-stream encoding (string headers only).

    prelude: total length, headers length (big-endian uint32), prelude CRC32;
    then the headers (name length byte, name, type 7 = string, uint16 value
    length, value), the payload and the CRC32 of everything before it.
    """
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack("!I", zlib.crc32(head))


def event_frame(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_event(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(body).encode(),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_event(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


@dataclass
class Call:
    api: str  # converse | converse-stream | invoke
    model: str
    last_user: str
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def _directives(model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in model.split("@")[1:]:
        name, _, value = part.partition("=")
        out[name] = value
    return out


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in blocks if "text" in b]


def _last_user(body: dict[str, Any]) -> str:
    last = ""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            texts = _texts(message.get("content", []))
            if texts:
                last = " ".join(texts)
    return last


class FakeBedrock(BackgroundServer):
    name = "fake Bedrock server"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/model/{model}/converse", self._converse)
        app.router.add_post("/model/{model}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{model}/invoke", self._invoke)
        return app

    def calls_for(self, text: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.last_user == text]

    # behaviour ---------------------------------------------------------------
    async def _prologue(
        self, api: str, request: web.Request, body: dict[str, Any], last_user: str
    ) -> web.Response | None:
        model = request.match_info["model"]
        with self._lock:
            self.calls.append(
                Call(api, model, last_user, time.monotonic(), dict(request.headers), body)
            )
            self._attempts[(model, last_user)] += 1
            attempt = self._attempts[(model, last_user)]
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
            return _error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        d = _directives(model)
        if "delay" in d:
            await asyncio.sleep(int(d["delay"]) / 1000)
        status = None
        if "always" in d:
            status = int(d["always"])
        elif "fail" in d and attempt <= int(d["fail"]):
            status = int(d.get("status", "500"))
        if status is None:
            return None
        headers = {"Retry-After": d["retry_after"]} if "retry_after" in d else {}
        code = ERROR_CODES.get(status, "InternalServerException")
        return _error(status, code, f"fake {code}", headers)

    def _answer(self, body: dict[str, Any], model: str) -> tuple[list[str], dict[str, Any]]:
        """(the reply's words, the usage) of a chat call."""
        words = f"reply to: {_last_user(body)}".split(" ")
        seen = [t for m in body.get("messages", []) for t in _texts(m.get("content", []))]
        seen += _texts(body.get("system", []))
        input_tokens = sum(len(t.split()) for t in seen)
        usage: dict[str, Any] = {
            "inputTokens": input_tokens,
            "outputTokens": len(words),
            "totalTokens": input_tokens + len(words),
        }
        cached = _directives(model).get("cached")
        if cached:
            usage["cacheReadInputTokens"] = int(cached)
            usage["totalTokens"] += int(cached)
        return words, usage

    async def _converse(self, request: web.Request) -> web.Response:
        body = await request.json()
        failure = await self._prologue("converse", request, body, _last_user(body))
        if failure is not None:
            return failure
        model = request.match_info["model"]
        words, usage = self._answer(body, model)
        call = _tool_call(body, model)
        if call is not None:
            content: list[dict[str, Any]] = [{"toolUse": call}]
            stop = "tool_use"
        else:
            content, stop = [{"text": " ".join(words)}], "end_turn"
        return web.json_response(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
        )

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        failure = await self._prologue("converse-stream", request, body, _last_user(body))
        if failure is not None:
            return failure
        model = request.match_info["model"]
        words, usage = self._answer(body, model)
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        await response.write(event_frame("messageStart", {"role": "assistant"}))
        call = _tool_call(body, model)
        if call is not None:
            arguments = json.dumps(call["input"])
            half = len(arguments) // 2
            start = {"toolUse": {"toolUseId": call["toolUseId"], "name": call["name"]}}
            await response.write(
                event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start})
            )
            for piece in (arguments[:half], arguments[half:]):
                delta = {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}
                await response.write(event_frame("contentBlockDelta", delta))
            stop = "tool_use"
        else:
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                delta = {"contentBlockIndex": 0, "delta": {"text": piece}}
                await response.write(event_frame("contentBlockDelta", delta))
                if "cut" in _directives(model):  # half a frame, then the connection ends
                    await response.write(event_frame("messageStop", {"stopReason": "x"})[:9])
                    await response.write_eof()
                    return response
                if "streamerror" in _directives(model):
                    await response.write(
                        exception_frame("modelStreamErrorException", "fake stream error")
                    )
                    await response.write_eof()
                    return response
            stop = "end_turn"
        await response.write(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        await response.write(event_frame("messageStop", {"stopReason": stop}))
        await response.write(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
        await response.write_eof()
        return response

    async def _invoke(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = request.match_info["model"]
        texts = body["texts"] if "texts" in body else [body["inputText"]]
        failure = await self._prologue("invoke", request, body, texts[0])
        if failure is not None:
            return failure
        if model.startswith("cohere.embed"):
            return web.json_response(
                {
                    "id": "fake",
                    "response_type": "embeddings_floats",
                    "embeddings": [fake_vector(t, 1024) for t in texts],
                    "texts": texts,
                }
            )
        dim = int(body.get("dimensions") or 1024)
        return web.json_response(
            {"embedding": fake_vector(texts[0], dim), "inputTextTokenCount": len(texts[0].split())}
        )


def fake_vector(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97 for i in range(dim)]


def _tool_call(body: dict[str, Any], model: str) -> dict[str, Any] | None:
    """A toolUse block when the model was told to call a tool and no tool answered yet."""
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if "tool" not in _directives(model) or not tools:
        return None
    for message in body.get("messages", []):
        if any("toolResult" in b for b in message.get("content", [])):
            return None
    forced = ((body["toolConfig"].get("toolChoice") or {}).get("tool") or {}).get("name")
    name = forced or tools[0]["toolSpec"]["name"]
    return {"toolUseId": "tooluse_fake", "name": name, "input": {"echo": _last_user(body)}}


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            **(headers or {}),
        },
    )
