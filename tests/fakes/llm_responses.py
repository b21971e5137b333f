"""The Responses API half of the fake LLM server (POST /v1/responses).

Answers as OpenAI's published stream does: `response.created`,
`response.in_progress`, then per output item `response.output_item.added`,
(`response.content_part.added`, `response.output_text.delta`…,
`response.output_text.done`, `response.content_part.done`) or
(`response.function_call_arguments.delta`…, `…done`),
`response.output_item.done`, and last `response.completed` with usage (or
`response.incomplete` when `max_output_tokens` cut the answer short). Every
event carries its `sequence_number`. The model-name directives are those of
llm.py (delay, fail, status, always, pace, tool, cached, nousage).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web


def seen(body: dict[str, Any]) -> tuple[str, str]:
    """(the last user message's text, the instructions) of a Responses body."""
    items = body.get("input")
    if isinstance(items, str):
        return items, str(body.get("instructions") or "")
    last_user = ""
    for item in items or ():
        if item.get("role") == "user" and item.get("type", "message") == "message":
            last_user = _text(item.get("content"))
    return last_user, str(body.get("instructions") or "")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(
        str(p.get("text", ""))
        for p in content or ()
        if p.get("type") in ("input_text", "output_text")
    )


def _input_words(body: dict[str, Any]) -> int:
    items = body.get("input")
    words = len(str(body.get("instructions") or "").split())
    if isinstance(items, str):
        return words + len(items.split())
    for item in items or ():
        if item.get("type", "message") == "message":
            words += len(_text(item.get("content")).split())
        elif item.get("type") == "function_call_output":
            words += len(str(item.get("output", "")).split())
    return words


def _tool_call(
    body: dict[str, Any], last_user: str, directives: dict[str, str]
) -> tuple[str, str] | None:
    if "tool" not in directives or not body.get("tools"):
        return None
    items = body.get("input")
    if not isinstance(items, str) and any(
        i.get("type") == "function_call_output" for i in items or ()
    ):
        return None  # the tool already answered: reply in text
    choice = body.get("tool_choice")
    name = body["tools"][0].get("name")
    if isinstance(choice, dict) and choice.get("name"):
        name = choice["name"]
    return str(name), json.dumps({"echo": last_user})


async def answer(
    request: web.Request, body: dict[str, Any], words: list[str], directives: dict[str, str]
) -> web.StreamResponse:
    last_user, _ = seen(body)
    call = _tool_call(body, last_user, directives)
    limit = body.get("max_output_tokens")
    cut = isinstance(limit, int) and call is None and limit < len(words)
    if cut:
        words = words[:limit]
    text = " ".join(words)
    input_tokens = _input_words(body)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": min(int(directives.get("cached", "0")), input_tokens)
        },
        "output_tokens": 7 if call else len(words),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + (7 if call else len(words)),
    }
    if call is not None:
        item: dict[str, Any] = {
            "type": "function_call", "id": "fc_fake", "call_id": "call_fake",
            "name": call[0], "arguments": call[1], "status": "completed",
        }  # fmt: skip
    else:
        item = {
            "type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }  # fmt: skip
    response = _response(body, "incomplete" if cut else "completed", [item], usage)
    if "nousage" in directives:
        response["usage"] = None
    if not body.get("stream"):
        return web.json_response(response)
    stream = _Stream(request)
    await stream.open()
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    await stream.send("response.created", {"response": pending})
    await stream.send("response.in_progress", {"response": pending})
    if call is not None:
        await _stream_call(stream, item)
    else:
        await _stream_text(stream, item, words, int(directives.get("pace", "0")) / 1000)
    final = "response.incomplete" if cut else "response.completed"
    await stream.send(final, {"response": response})
    await stream.close()
    return stream.response


def _response(
    body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "text": body.get("text", {"format": {"type": "text"}}),
        "usage": usage,
    }


class _Stream:
    """Server-sent events with the Responses API's `sequence_number`."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        self.sequence = 0

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        await self.response.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

    async def close(self) -> None:
        await self.response.write_eof()


async def _stream_text(
    stream: _Stream, item: dict[str, Any], words: list[str], pace: float
) -> None:
    ids = {"item_id": item["id"], "output_index": 0}
    await stream.send("response.output_item.added", {
        "output_index": 0, "item": {**item, "status": "in_progress", "content": []},
    })  # fmt: skip
    empty = {"type": "output_text", "text": "", "annotations": []}
    await stream.send("response.content_part.added", {**ids, "content_index": 0, "part": empty})
    for i, word in enumerate(words):
        if pace:
            await asyncio.sleep(pace)
        piece = word if i == 0 else " " + word
        await stream.send(
            "response.output_text.delta",
            {**ids, "content_index": 0, "delta": piece, "logprobs": []},
        )
    text = " ".join(words)
    await stream.send(
        "response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []}
    )
    await stream.send(
        "response.content_part.done", {**ids, "content_index": 0, "part": {**empty, "text": text}}
    )
    await stream.send("response.output_item.done", {"output_index": 0, "item": item})


async def _stream_call(stream: _Stream, item: dict[str, Any]) -> None:
    ids = {"item_id": item["id"], "output_index": 0}
    added = {**item, "arguments": "", "status": "in_progress"}
    await stream.send("response.output_item.added", {"output_index": 0, "item": added})
    arguments = item["arguments"]
    half = len(arguments) // 2
    for part in (arguments[:half], arguments[half:]):
        await stream.send("response.function_call_arguments.delta", {**ids, "delta": part})
    await stream.send("response.function_call_arguments.done", {**ids, "arguments": arguments})
    await stream.send("response.output_item.done", {"output_index": 0, "item": item})
