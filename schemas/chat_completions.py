"""OpenAI chat completion bodies <-> ChatJob, in one place.

The batch line bodies and the batch output files speak OpenAI's chat
completions format; everything behind them speaks ChatJob. Content given as a
list of text parts is joined; other part types are refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.jobs import ChatJob, ChatMessage

_ROLES = {"developer": "system"}


class BodyError(ValueError):
    """A chat completion body that cannot become a ChatJob; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BodyError("only text content parts are supported", f"{where}[{index}]")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise BodyError("content must be a string or a list of text parts", where)


def chat_job_from_body(body: Any, metadata: dict[str, str] | None = None) -> ChatJob:
    """A ChatJob from an OpenAI chat completion request body."""
    if not isinstance(body, dict):
        raise BodyError("body must be a JSON object", "body")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BodyError("messages must be a non-empty list", "body.messages")
    converted = []
    for index, message in enumerate(messages):
        where = f"body.messages[{index}]"
        if not isinstance(message, dict):
            raise BodyError("a message must be an object", where)
        role = message.get("role")
        role = _ROLES.get(role, role) if isinstance(role, str) else role
        converted.append({"role": role, "content": _content(message.get("content"), where)})
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    try:
        return ChatJob(
            model=body.get("model") or "",
            messages=[ChatMessage.model_validate(m) for m in converted],
            user_id=body.get("user"),
            temperature=body.get("temperature"),
            max_tokens=max_tokens,
            metadata=metadata or {},
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BodyError(first["msg"], f"body.{field}") from exc


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `chat.completion` response body, shaped as the gateway's `/v1/chat/completions` answers."""
    calls = [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in tool_calls or ()
    ]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    finish = finish_reason or ("tool_calls" if calls else "stop")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }
