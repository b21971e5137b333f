"""Our (OpenAI-shaped) chat request in the shape of Bedrock's Converse API, and back.

Pure data, no SDK: `infra/providers/bedrock.py` sends what this builds.
Converse wants the system prompt apart, strictly alternating user/assistant
turns of content blocks (`text`, `image`, `toolUse`, `toolResult`), sampling
in `inferenceConfig` and tools in `toolConfig`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from infra.errors import PermanentError
from infra.providers.anthropic import _format_instruction
from infra.providers.base import ChatRequest, Image, Message

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Converse's image formats, by the media type of a data: URL.
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
# Model families whose ConverseStream takes tools (Bedrock's model feature table):
# the others (Llama, Mistral, ...) take tools on Converse only.
STREAMS_TOOLS = ("anthropic.", "amazon.nova", "cohere.command-r")


# The geography an inference profile's id starts with (us.anthropic.claude-...).
PROFILE_PREFIXES = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})


def streams_tools(model_id: str) -> bool:
    """Whether ConverseStream serves tool use for this model id (an inference profile's too)."""
    prefix, _, rest = model_id.partition(".")
    family = rest if prefix in PROFILE_PREFIXES else model_id
    return family.startswith(STREAMS_TOOLS)


def converse_params(request: ChatRequest) -> dict[str, Any]:
    """The keyword arguments of `converse` / `converse_stream` for our request."""
    system = [m.content for m in request.messages if m.role == "system" and m.content]
    # Bedrock has no response_format: the schema is asked for in words, as of Claude.
    system += _format_instruction(request.response_format)
    params: dict[str, Any] = {"modelId": request.model, "messages": _turns(request.messages)}
    if system:
        params["system"] = [{"text": text} for text in system]
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        params["inferenceConfig"] = inference
    if request.tools:
        tool_config: dict[str, Any] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": t.name,
                        "inputSchema": {
                            "json": t.parameters or {"type": "object", "properties": {}}
                        },
                        **({"description": t.description} if t.description else {}),
                    }
                }
                for t in request.tools
            ]
        }
        # Converse has no "none": the tools stay (a history with tool blocks needs
        # them), the model's default applies.
        if request.forced_tool:
            tool_config["toolChoice"] = {"tool": {"name": request.forced_tool}}
        elif request.tool_choice == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif request.tool_choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        params["toolConfig"] = tool_config
    return params


def _turns(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Alternating turns: tool answers go in user turns, neighbours of one role merge."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue  # Converse refuses an empty turn
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [
            {
                "toolResult": {
                    "toolUseId": m.tool_call_id or "",
                    "content": [{"text": m.content or " "}],
                }
            }
        ]
    if m.parts:
        blocks = [_part_block(p) for p in m.parts if p != ""]  # Converse refuses empty text
    else:
        blocks = [{"text": m.content}] if m.content else []
    for call in m.tool_calls:
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.name, "input": _json(call.arguments)}}
        )
    return blocks


def _part_block(part: str | Image) -> dict[str, Any]:
    if isinstance(part, str):
        return {"text": part}
    if not part.url.startswith("data:"):
        # Converse takes image bytes (or an S3 object of the caller's account), never a
        # URL; fetching arbitrary URLs from a worker is not something we do for a caller.
        raise PermanentError(
            "bedrock takes images inline only: send the image as a data: URL "
            "(data:image/png;base64,...)",
            status=400,
        )
    header, _, data = part.url.partition(",")
    media_type = header.removeprefix("data:").split(";", 1)[0].lower()
    image_format = IMAGE_FORMATS.get(media_type)
    if image_format is None or ";base64" not in header:
        raise PermanentError(
            f"bedrock takes base64 png, jpeg, gif or webp images, not {header!r}", status=400
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError("bedrock: an image's base64 data does not decode", status=400) from exc
    return {"image": {"format": image_format, "source": {"bytes": raw}}}


def _json(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def usage_counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    """(input tokens, output tokens, of the input those read from the prompt cache).

    Converse's `inputTokens` leaves out the tokens read from and written to the
    cache (as Anthropic's API does); ours include them.
    """
    cached = int(usage.get("cacheReadInputTokens") or 0)
    written = int(usage.get("cacheWriteInputTokens") or 0)
    return (
        int(usage.get("inputTokens") or 0) + cached + written,
        int(usage.get("outputTokens") or 0),
        cached,
    )


def finish_reason(stop_reason: str | None) -> str | None:
    return FINISH_REASONS.get(stop_reason or "", stop_reason)
