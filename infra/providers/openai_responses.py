"""An OpenAI deployment that speaks the Responses API (`api = "responses"` in the routing file).

The same port as chat completions (ChatProvider): a ChatRequest becomes one
`POST {base_url}/responses` with `stream: true` and `store: false` (the
gateway keeps the history; the upstream keeps nothing), and the Responses
event stream becomes a Completion:

    response.output_text.delta                  -> on_delta(text)
    response.output_item.done (function_call)   -> a ToolCall (its call_id as id)
    response.completed / response.incomplete    -> usage and finish_reason
    response.failed / error                     -> TransientError or PermanentError

The Responses API has no `seed`, `stop`, `presence_penalty` or
`frequency_penalty`: they are not sent.
"""

from __future__ import annotations

from typing import Any

from infra.errors import PermanentError, TransientError
from infra.providers import tokens
from infra.providers.base import ChatRequest, Completion, Message, OnDelta, ToolCall
from infra.providers.http_errors import from_status
from infra.providers.openai_http import OpenAIHttp

# The `code` of a failed response or an `error` event, as the HTTP status it
# stands for: the same mapping as an error answer (http_errors.from_status).
CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "server_is_overloaded": 503,
    "slow_down": 503,
    "vector_store_timeout": 504,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
}
# Why a response stopped short, as chat completions' finish_reason.
INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


class OpenAIResponsesProvider(OpenAIHttp):
    path = "/responses"

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        reading = _Reading(self.name)

        async def on_event(event: dict[str, Any]) -> None:
            text = reading.add(event)
            if text:
                await on_delta(text)

        await self.stream_events(responses_body(request), on_event)
        return reading.completion(request)


class _Reading:
    """The events of one streamed response, put together."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.parts: list[str] = []
        self.calls: list[ToolCall] = []
        self.response: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> str:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = str(event.get("delta") or "")
            self.parts.append(delta)
            return delta
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self.calls.append(
                    ToolCall(
                        str(item.get("call_id") or item.get("id") or ""),
                        str(item.get("name") or ""),
                        str(item.get("arguments") or "{}"),
                    )
                )
        elif kind in ("response.completed", "response.incomplete"):
            self.response = event.get("response") or {}
        elif kind == "response.failed":
            response = event.get("response") or {}
            raise self._failure(response.get("error") or {})
        elif kind == "error":
            raise self._failure(event.get("error") or event)
        return ""

    def _failure(self, error: dict[str, Any]) -> TransientError | PermanentError:
        code = str(error.get("code") or error.get("type") or "")
        message = str(error.get("message") or code or "the response failed")
        status = CODE_STATUS.get(code)
        if status is None:
            # An unknown failure inside a stream that began well: the vendor's fault, final.
            return PermanentError(f"{self.vendor}: {message} ({code or 'no code'})", status=502)
        return from_status(self.vendor, status, f"{message} ({code})")

    def completion(self, request: ChatRequest) -> Completion:
        response = self.response or {}
        text = "".join(self.parts) or _output_text(response)
        incomplete = (response.get("incomplete_details") or {}).get("reason")
        if self.calls:
            finish: str | None = "tool_calls"
        elif response.get("status") == "incomplete":
            finish = INCOMPLETE_REASONS.get(str(incomplete), "length")
        else:
            finish = "stop" if self.response is not None else None
        usage = response.get("usage")
        if usage:
            details = usage.get("input_tokens_details") or {}
            return Completion(
                text,
                finish,
                int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0),
                tool_calls=list(self.calls),
                cached_input_tokens=int(details.get("cached_tokens") or 0),
            )
        answer = Message("assistant", text, self.calls)
        return Completion(
            text,
            finish,
            tokens.count_request(request),
            tokens.count_text(text) + tokens.count_tool_calls(answer),
            usage_estimated=True,
            tool_calls=list(self.calls),
        )


def _output_text(response: dict[str, Any]) -> str:
    """The text of a finished response's message items (for a stream that sent no deltas)."""
    return "".join(
        part.get("text", "")
        for item in response.get("output") or ()
        if item.get("type") == "message"
        for part in item.get("content") or ()
        if part.get("type") == "output_text"
    )


def responses_body(request: ChatRequest) -> dict[str, Any]:
    """The request in the Responses API's shape."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": [item for m in request.messages for item in _items(m)],
        "stream": True,
        "store": False,
    }
    instructions = [m.content for m in request.messages if m.role in ("system", "developer")]
    if instructions:
        body["instructions"] = "\n\n".join(instructions)
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    text_format = _text_format(request.response_format)
    if text_format is not None:
        body["text"] = {"format": text_format}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "parameters": t.parameters or {"type": "object", "properties": {}},
                # Chat completions' default; the Responses API would default to strict.
                "strict": False,
                **({"description": t.description} if t.description else {}),
            }
            for t in request.tools
        ]
    if request.forced_tool:
        body["tool_choice"] = {"type": "function", "name": request.forced_tool}
    elif request.tool_choice:
        body["tool_choice"] = request.tool_choice
    return body


def _items(m: Message) -> list[dict[str, Any]]:
    if m.role in ("system", "developer"):
        return []  # sent as `instructions`
    if m.role == "tool":
        return [{"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content}]
    items: list[dict[str, Any]] = []
    if m.role == "assistant":
        if m.content:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": m.content}],
                }
            )
        items += [
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
            for c in m.tool_calls
        ]
        return items
    return [{"type": "message", "role": m.role, "content": _input_content(m)}]


def _input_content(m: Message) -> list[dict[str, Any]]:
    if not m.parts:
        return [{"type": "input_text", "text": m.content}]
    return [
        {"type": "input_text", "text": p}
        if isinstance(p, str)
        else {"type": "input_image", "image_url": p.url, "detail": p.detail or "auto"}
        for p in m.parts
    ]


def _text_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        out: dict[str, Any] = {
            "type": "json_schema",
            "name": spec.get("name") or "answer",
            "schema": spec.get("schema") or {},
        }
        if spec.get("strict") is not None:
            out["strict"] = bool(spec["strict"])
        if spec.get("description"):
            out["description"] = spec["description"]
        return out
    if kind == "json_object":
        return {"type": "json_object"}
    return None
