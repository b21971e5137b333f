"""A chat job's stream entries as OpenAI's `chat.completion.chunk` Server-Sent Events."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from infra.live_streams import StreamEvent

DONE = b"data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def usage_of(result: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage: prompt tokens read from the vendor's cache in
    `prompt_tokens_details.cached_tokens`, as OpenAI reports them."""
    usage = result.get("usage") or {}
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.get("cached_input_tokens", 0)},
    }


def wire_tool_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": c["arguments"]},
        }
        for c in result.get("tool_calls") or ()
    ]


async def completion_chunks(
    job_id: uuid.UUID,
    model: str,
    first: StreamEvent,
    next_event: Callable[[], Awaitable[StreamEvent]],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Chunks in order: the role, each text delta, tool calls, the finish reason, usage, [DONE]."""
    base = {
        "id": f"chatcmpl-{job_id.hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    sent_text = False
    event = first
    while True:
        if event.type == "delta":
            sent_text = True
            yield chunk({"content": event.data["text"]})
        elif event.type == "result":
            result = event.data
            if result.get("text") and not sent_text:
                # A cached answer (or one that came whole) arrives without deltas.
                yield chunk({"content": result["text"]})
            calls = wire_tool_calls(result)
            if calls:
                yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
            yield chunk({}, result.get("finish_reason") or ("tool_calls" if calls else "stop"))
            if include_usage:
                yield _sse({**base, "choices": [], "usage": usage_of(result)})
            break
        elif event.type == "error":
            message = str(event.data.get("message", "upstream failure"))
            yield _sse(
                {
                    "error": {
                        "message": message,
                        "type": "upstream_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            break
        elif event.type == "done":
            break
        event = await next_event()
    yield DONE
