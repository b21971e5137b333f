"""A local HTTP server speaking Gemini's REST API, as the `google-genai` SDK calls it.

Paths (any API version; the SDK says v1 for the Developer API and v1beta1 for Vertex):
    POST /{v}/models/{model}:generateContent | :streamGenerateContent?alt=sse
         | :batchEmbedContents | :embedContent
    POST /{v}/projects/{p}/locations/{l}/publishers/google/models/{model}:…  (Vertex AI;
         :predict too, the Vertex shape of text-embedding-004)

Behaviour is chosen by the model name, as in tests/fakes/llm.py:
    gemini-fake                  answers "reply to: <last user text>", a chunk a word
    gemini-fake@fail=2           the first 2 calls of one conversation answer 500
    gemini-fake@fail=1@status=429@retry_after=1     … 429 with Retry-After: 1
    gemini-fake@fail=1@status=429@retry_info=1      … 429 with a RetryInfo of "1s" in the body
    gemini-fake@always=503       always that status (400: INVALID_ARGUMENT, and so on)
    gemini-fake@cached=3         3 of the prompt's tokens read from the context cache
    gemini-fake@thoughts=5       5 thinking tokens (billed as output)
    gemini-fake@nousage          no usageMetadata
    gemini-fake@tool             calls the first declared function (or the one allowed)
                                 with {"echo": <last user text>} and a thought signature
    gemini-fake@tool@longsig     … with a signature too long for a tool-call id (880 bytes)
A model any other name answers like gemini-fake. Every call is recorded.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import BackgroundServer

SIGNATURE = b"fake-thought-signature"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class GeminiCall:
    path: str
    model: str
    method: str  # generateContent, streamGenerateContent, batchEmbedContents, …
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


def _last_user(body: dict[str, Any]) -> str:
    """The text of the last user turn that says something (not a function's answer)."""
    for content in reversed(body.get("contents") or ()):
        if content.get("role", "user") != "user":
            continue
        texts = [p["text"] for p in content.get("parts") or () if "text" in p]
        if texts:
            return " ".join(texts)
    return ""


def _words(body: dict[str, Any]) -> int:
    """A crude token count of a request: its words, and one per non-text part."""
    count = 0
    system = body.get("systemInstruction") or {}
    for content in [system, *(body.get("contents") or ())]:
        for part in content.get("parts") or ():
            count += len(part["text"].split()) if "text" in part else 1
    return count


class FakeGeminiServer(BackgroundServer):
    name = "fake Gemini server"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[GeminiCall] = []
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/{version}/models/{target}", self._dispatch)
        app.router.add_post(
            "/{version}/projects/{project}/locations/{location}/publishers/google/models/{target}",
            self._dispatch,
        )
        return app

    def calls_for(self, text: str) -> list[GeminiCall]:
        with self._lock:
            return [c for c in self.calls if c.last_user == text]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        body = await request.json()
        if method in ("batchEmbedContents", "embedContent", "predict"):
            last = json.dumps(body)[:200]
        else:
            last = _last_user(body)
        with self._lock:
            self.calls.append(
                GeminiCall(
                    request.path_qs, model, method, last, time.monotonic(),
                    dict(request.headers), body,
                )
            )  # fmt: skip
            self._attempts[(model, last)] += 1
            attempt = self._attempts[(model, last)]
        failure = _failure(_directives(model), attempt)
        if failure is not None:
            return failure
        if method == "generateContent":
            return web.json_response(_answer(model, body, whole=True))
        if method == "streamGenerateContent":
            return await _stream(request, model, body)
        if method == "batchEmbedContents":
            texts = [_text(r.get("content") or {}) for r in body.get("requests") or ()]
            dim = _dimensions(body.get("requests") or [{}])
            return web.json_response({"embeddings": [{"values": _vector(t, dim)} for t in texts]})
        if method == "embedContent":
            dim = int(body.get("outputDimensionality") or (body.get("config") or {}).get(
                "outputDimensionality") or 8)  # fmt: skip
            return web.json_response(
                {"embedding": {"values": _vector(_text(body["content"]), dim)}}
            )
        if method == "predict":  # Vertex's text-embedding-004
            dim = int((body.get("parameters") or {}).get("outputDimensionality") or 8)
            texts = [str(i.get("content", "")) for i in body.get("instances") or ()]
            predictions = [
                {"embeddings": {"values": _vector(t, dim),
                                "statistics": {"token_count": len(t.split())}}}
                for t in texts
            ]  # fmt: skip
            return web.json_response({"predictions": predictions})
        return web.json_response({"error": {"code": 404, "message": method}}, status=404)


def _failure(d: dict[str, str], attempt: int) -> web.Response | None:
    status = None
    if "always" in d:
        status = int(d["always"])
    elif "fail" in d and attempt <= int(d["fail"]):
        status = int(d.get("status", "500"))
    if status is None:
        return None
    error: dict[str, Any] = {
        "code": status,
        "message": f"fake failure {status}",
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if "retry_info" in d:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{d['retry_info']}s",
            }
        ]
    headers = {"Retry-After": d["retry_after"]} if "retry_after" in d else {}
    return web.json_response({"error": error}, status=status, headers=headers)


def _text(content: dict[str, Any]) -> str:
    return " ".join(p.get("text", "") for p in content.get("parts") or ())


def _dimensions(requests: list[dict[str, Any]]) -> int:
    first = requests[0] if requests else {}
    return int(first.get("outputDimensionality") or 8)


def _vector(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97 for i in range(dim)]


def _tool_call(body: dict[str, Any], last_user: str) -> dict[str, Any] | None:
    declarations = [f for t in body.get("tools") or () for f in t.get("functionDeclarations") or ()]
    if not declarations:
        return None
    contents = body.get("contents") or []
    if contents and any("functionResponse" in p for p in contents[-1].get("parts") or ()):
        return None  # the function answered: reply in text
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    name = (calling.get("allowedFunctionNames") or [declarations[0]["name"]])[0]
    signature = (
        SIGNATURE * 40 if "longsig" in _directives(str(body.get("model", ""))) else SIGNATURE
    )
    return {
        "functionCall": {"name": name, "args": {"echo": last_user}},
        "thoughtSignature": base64.b64encode(signature).decode(),
    }


def _usage(model: str, body: dict[str, Any], output: int) -> dict[str, Any] | None:
    d = _directives(model)
    if "nousage" in d:
        return None
    prompt = _words(body)
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
    }
    if "cached" in d:
        usage["cachedContentTokenCount"] = min(int(d["cached"]), prompt)
    if "thoughts" in d:
        usage["thoughtsTokenCount"] = int(d["thoughts"])
        usage["totalTokenCount"] += int(d["thoughts"])
    return usage


def _answer(model: str, body: dict[str, Any], *, whole: bool) -> dict[str, Any]:
    last_user = _last_user(body)
    call = _tool_call({**body, "model": model}, last_user) if "tool" in _directives(model) else None
    parts = [call] if call else [{"text": f"reply to: {last_user}"}]
    out: dict[str, Any] = {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "modelVersion": model,
    }
    usage = _usage(model, body, 7 if call else len(f"reply to: {last_user}".split()))
    if usage is not None:
        out["usageMetadata"] = usage
    return out


async def _stream(request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    whole = _answer(model, body, whole=False)
    parts = whole["candidates"][0]["content"]["parts"]
    chunks: list[dict[str, Any]] = []
    if "text" in parts[0]:
        words = parts[0]["text"].split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunks.append({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]},
                                           "index": 0}]})  # fmt: skip
    else:
        chunks.append({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]})
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    if "usageMetadata" in whole:
        chunks[-1]["usageMetadata"] = whole["usageMetadata"]
    for chunk in chunks:
        await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
    await response.write_eof()
    return response
