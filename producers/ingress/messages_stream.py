"""A chat job's answer as Anthropic's Message: whole, or as its Server-Sent Events.

The stream follows Anthropic's order: `message_start`, `ping`, for each
content block `content_block_start`, its deltas (`text_delta`,
`input_json_delta`) and `content_block_stop`, then `message_delta` (the stop
reason and the usage) and `message_stop`; a failure after the stream began
is an `error` event. Text streams as the model writes it; tool calls arrive
whole with the job's result, each as one block.

Usage is Anthropic's: `input_tokens` are the prompt tokens neither read from
nor written to the prompt cache, which are `cache_read_input_tokens` and
`cache_creation_input_tokens`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from infra.live_streams import StreamEvent
from producers.ingress.anthropic_errors import error_type
from producers.ingress.model_call import NextEvent
from schemas.anthropic_messages import STOP_REASONS


def usage_of(result: dict[str, Any]) -> dict[str, int]:
    usage = result.get("usage") or {}
    read = usage.get("cached_input_tokens", 0)
    written = usage.get("cache_write_input_tokens", 0)
    return {
        "input_tokens": max(0, usage.get("input_tokens", 0) - read - written),
        "output_tokens": usage.get("output_tokens", 0),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def stop_reason(result: dict[str, Any]) -> str:
    finish = result.get("finish_reason")
    if finish is None:
        return "tool_use" if result.get("tool_calls") else "end_turn"
    return STOP_REASONS.get(finish, "end_turn")


def tool_use_blocks(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "id": c["id"], "name": c["name"], "input": _input(c["arguments"])}
        for c in result.get("tool_calls") or ()
    ]


def _input(arguments: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class MessageShape:
    """A model_call.Shape: `model` as the caller named it; `input_tokens` the request's
    estimate, told at the stream's start (its end tells the vendor's count)."""

    model: str
    input_tokens: int

    def message(self, job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"msg_{job_id.hex}",
            "type": "message",
            "role": "assistant",
            "model": result.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }

    def body(self, job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
        text = result.get("text") or ""
        content = [{"type": "text", "text": text}] if text else []
        return {
            **self.message(job_id, result),
            "content": [*content, *tool_use_blocks(result)],
            "stop_reason": stop_reason(result),
            "usage": usage_of(result),
        }

    async def stream(
        self, job_id: uuid.UUID, first: StreamEvent, next_event: NextEvent
    ) -> AsyncIterator[bytes]:
        yield _sse("message_start", {"message": self.message(job_id, {})})
        yield _sse("ping", {})
        text_open = False
        event = first
        while True:
            if event.type == "delta":
                if not text_open:
                    text_open = True
                    yield _block_start(0, {"type": "text", "text": ""})
                yield _delta(0, {"type": "text_delta", "text": event.data["text"]})
            elif event.type == "result":
                result = event.data
                if result.get("text") and not text_open:
                    # A cached answer (or one that came whole) arrives without deltas.
                    text_open = True
                    yield _block_start(0, {"type": "text", "text": ""})
                    yield _delta(0, {"type": "text_delta", "text": result["text"]})
                if text_open:
                    yield _sse("content_block_stop", {"index": 0})
                index = 1 if text_open else 0
                for block in tool_use_blocks(result):
                    yield _block_start(index, {**block, "input": {}})
                    arguments = orjson.dumps(block["input"]).decode()
                    yield _delta(index, {"type": "input_json_delta", "partial_json": arguments})
                    yield _sse("content_block_stop", {"index": index})
                    index += 1
                delta = {"stop_reason": stop_reason(result), "stop_sequence": None}
                yield _sse("message_delta", {"delta": delta, "usage": usage_of(result)})
                yield _sse("message_stop", {})
                return
            elif event.type == "error":
                status = int(event.data.get("status") or 502)
                message = str(event.data.get("message", "upstream failure"))
                error = {"type": error_type(status if status >= 400 else 502), "message": message}
                yield _sse("error", {"error": error})
                return
            elif event.type == "done":
                return
            event = await next_event()


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _sse("content_block_start", {"index": index, "content_block": block})


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse("content_block_delta", {"index": index, "delta": delta})


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"
