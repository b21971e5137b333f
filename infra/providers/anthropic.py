"""Anthropic's Messages API, through the official async SDK.

Requests arrive in our (OpenAI-shaped) form and leave in Anthropic's: the
system prompt travels apart from the turns, tool calls are `tool_use`
blocks, tool answers are `tool_result` blocks in a user turn, and stop
reasons are mapped back to OpenAI's finish reasons.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anthropic

from infra.errors import PermanentError, TransientError
from infra.providers.base import ChatRequest, Completion, Image, Message, OnDelta, ToolCall
from infra.providers.http_errors import from_status

DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider:
    """Configured by the SDK's own variables (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)."""

    def __init__(
        self,
        *,
        name: str = "anthropic",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or os.environ.get("ANTHROPIC_API_KEY") or "not-set",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
        )

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        input_tokens = output_tokens = cache_read = cache_write = 0
        stop_reason: str | None = None
        try:
            stream = await self._client.messages.create(**request_params(request))
            async for event in stream:
                if event.type == "message_start":
                    usage = event.message.usage
                    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
                    cache_read = usage.cache_read_input_tokens or 0
                    cache_write = usage.cache_creation_input_tokens or 0
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    calls[event.index] = {"id": block.id, "name": block.name, "args": ""}
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        await on_delta(event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.index in calls:
                        calls[event.index]["args"] += event.delta.partial_json
                elif event.type == "message_delta":
                    # Cumulative counts; the input ones only where the API sends them.
                    delta_usage = event.usage
                    output_tokens = delta_usage.output_tokens
                    input_tokens = _or(delta_usage.input_tokens, input_tokens)
                    cache_read = _or(delta_usage.cache_read_input_tokens, cache_read)
                    cache_write = _or(delta_usage.cache_creation_input_tokens, cache_write)
                    stop_reason = event.delta.stop_reason
        except anthropic.APIStatusError as exc:
            raise from_status(
                self.name, exc.status_code, _message(exc), exc.response.headers
            ) from exc
        except anthropic.APITimeoutError as exc:
            raise TransientError(f"{self.name}: timed out", status=504) from exc
        except anthropic.APIConnectionError as exc:
            raise TransientError(f"{self.name}: {type(exc).__name__}: {exc}", status=502) from exc
        except anthropic.AnthropicError as exc:
            raise PermanentError(f"{self.name}: {exc}", status=502) from exc
        if stop_reason is None:
            # the connection ended before the answer did: never bill a partial answer as whole
            raise TransientError(
                f"{self.name}: the stream ended before its stop_reason", status=502
            )
        tool_calls = [
            ToolCall(c["id"], c["name"], c["args"] or "{}") for _, c in sorted(calls.items())
        ]
        finish = FINISH_REASONS.get(stop_reason or "", stop_reason)
        # Anthropic's input_tokens leaves out the cache's reads and writes; ours count them.
        return Completion(
            "".join(parts),
            finish,
            input_tokens + cache_read + cache_write,
            output_tokens,
            tool_calls=tool_calls,
            cached_input_tokens=cache_read,
            cache_write_input_tokens=cache_write,
        )

    async def close(self) -> None:
        await self._client.close()


def _format_instruction(response_format: dict[str, Any] | None) -> list[str]:
    """OpenAI's JSON modes, asked of Claude in words: the Messages API has no such switch."""
    if not response_format or response_format.get("type") not in ("json_object", "json_schema"):
        return []
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema is None:
        return ["Answer with one JSON object and nothing else: no prose, no code fence."]
    return [
        "Answer with one JSON object that validates against this JSON Schema, and nothing "
        f"else (no prose, no code fence): {json.dumps(schema, separators=(',', ':'))}"
    ]


def request_params(request: ChatRequest) -> dict[str, Any]:
    """Our request in the Messages API's shape."""
    system = _system(request)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": _turns(request.messages),
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "stream": True,
    }
    if system:
        params["system"] = system
    # The SDK dropped the typed sampling parameters; the API takes them. Its
    # temperature range is 0..1, and recent models refuse both at once.
    # (It has no seed or penalties: those are OpenAI's, and dropped here.)
    sampling: dict[str, Any] = {}
    if request.temperature is not None:
        sampling["temperature"] = min(request.temperature, 1.0)
    elif request.top_p is not None:
        sampling["top_p"] = request.top_p
    if request.top_k is not None:
        sampling["top_k"] = request.top_k
    if sampling:
        params["extra_body"] = sampling
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    if request.tools:
        params["tools"] = [
            {
                "name": t.name,
                "input_schema": t.parameters or {"type": "object", "properties": {}},
                **({"description": t.description} if t.description else {}),
                **({"cache_control": dict(t.cache_control)} if t.cache_control else {}),
            }
            for t in request.tools
        ]
        if request.forced_tool:
            params["tool_choice"] = {"type": "tool", "name": request.forced_tool}
        elif request.tool_choice in ("auto", "none"):
            params["tool_choice"] = {"type": request.tool_choice}
        elif request.tool_choice == "required":
            params["tool_choice"] = {"type": "any"}
    return params


def _system(request: ChatRequest) -> str | list[dict[str, Any]]:
    """The system messages as one text, or as text blocks where one marks a cache breakpoint."""
    system = [m for m in request.messages if m.role == "system"]
    extra = _format_instruction(request.response_format)
    if not any(m.cache_control for m in system):
        return "\n\n".join([m.content for m in system] + extra)
    blocks = [_cached({"type": "text", "text": m.content}, m) for m in system if m.content]
    return blocks + [{"type": "text", "text": text} for text in extra]


def _cached(block: dict[str, Any], m: Message) -> dict[str, Any]:
    return {**block, "cache_control": dict(m.cache_control)} if m.cache_control else block


def _blocks(m: Message) -> list[dict[str, Any]]:
    blocks = _plain_blocks(m)
    if m.cache_control and blocks:
        blocks[-1] = _cached(blocks[-1], m)  # the breakpoint ends the message
    return blocks


def _plain_blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}]
    if m.parts:
        blocks = [_part_block(p) for p in m.parts if p != ""]  # the API refuses empty text
    else:
        blocks = [{"type": "text", "text": m.content}] if m.content else []
    for call in m.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _json(call.arguments)}
        )
    return blocks


def _part_block(part: str | Image) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if part.url.startswith("data:"):
        # data:image/png;base64,<data>: the Messages API takes the two apart.
        header, _, data = part.url.partition(",")
        media_type = header.removeprefix("data:").split(";", 1)[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _turns(messages: list[Message] | Any) -> list[dict[str, Any]]:
    """Alternating user/assistant turns: tool answers go in user turns, neighbours merge."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
            turn["content"] = blocks[0]["text"]  # the plain form, for a plain turn
    return turns


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _json(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return str(exc.message)
