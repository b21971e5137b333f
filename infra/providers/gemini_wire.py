"""Our (OpenAI-shaped) chat request in Gemini's shapes, and Gemini's stream back in ours.

- System messages become the `system_instruction`; turns are `user` and
  `model` contents, neighbours of one role merged (tool answers are user turns).
- Tools are function declarations with their JSON Schema as it is
  (`parameters_json_schema`); a call comes back as a `functionCall` part and
  goes back as a `functionResponse` part named after the call it answers.
  Gemini gives calls no id, so we make one, carrying the call's thought
  signature (Gemini 3 refuses a follow-up without it) after `SIGNATURE`
  when it fits in an id, else a mark that one was there.
- Images: a data: URL is sent inline; an https URL is sent as `file_data`
  for the vendor to fetch (the worker fetches nothing a caller names).
- `response_format` becomes `response_mime_type` (+ `response_json_schema`).
- Usage: thinking tokens are billed as output, so they count as output here.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import uuid
from typing import Any

from google.genai import types

from infra.errors import PermanentError
from infra.providers import tokens
from infra.providers.base import ChatRequest, Completion, Image, Message, ToolCall

SIGNATURE = "__sig__"
# Tool-call ids are at most this long (schemas/jobs.py): a longer signature is left out
# of the id, and the call goes back with the validator-skipping signature Google
# documents for calls whose own signature was lost.
MAX_ID = 200
SKIP_SIGNATURE = base64.urlsafe_b64decode("skip_thought_signature_validator")
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def request_params(request: ChatRequest) -> tuple[list[types.Content], types.GenerateContentConfig]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    config: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "max_output_tokens": request.max_tokens,
        "stop_sequences": list(request.stop) or None,
        "system_instruction": system or None,
        # The SDK would run Python callables itself; we pass declarations only.
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
    }
    config.update(_response_format(request.response_format))
    if request.tools:
        config["tools"] = [
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name=t.name,
                        description=t.description,
                        parameters_json_schema=t.parameters or None,
                    )
                    for t in request.tools
                ]
            )
        ]
        config["tool_config"] = _tool_config(request)
    return _contents(request.messages), types.GenerateContentConfig(**config)


def _response_format(response_format: dict[str, Any] | None) -> dict[str, Any]:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return {"response_mime_type": "application/json"}
    if kind == "json_schema":
        schema = ((response_format or {}).get("json_schema") or {}).get("schema")
        return {"response_mime_type": "application/json", "response_json_schema": schema}
    return {}


def _tool_config(request: ChatRequest) -> types.ToolConfig | None:
    if request.forced_tool:
        calling = types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY,
            allowed_function_names=[request.forced_tool],
        )
    elif request.tool_choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[request.tool_choice]
        calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode(mode))
    else:
        return None
    return types.ToolConfig(function_calling_config=calling)


def _contents(messages: Any) -> list[types.Content]:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    contents: list[types.Content] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "model" if m.role == "assistant" else "user"
        parts = _parts(m, names)
        if not parts:
            continue
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)
        else:
            contents.append(types.Content(role=role, parts=parts))
    return contents


def _parts(m: Message, names: dict[str, str]) -> list[types.Part]:
    if m.role == "tool":
        call_id = m.tool_call_id or ""
        name = names.get(call_id)
        if name is None:
            raise PermanentError(
                f"a tool message answers {call_id!r}, which no assistant message called",
                status=400,
            )
        return [
            types.Part(
                function_response=types.FunctionResponse(
                    name=name, response=_tool_result(m.content)
                )
            )
        ]
    if m.parts:
        parts = [_part(p) for p in m.parts if p != ""]
    else:
        parts = [types.Part(text=m.content)] if m.content else []
    for call in m.tool_calls:
        _, marked, signature = call.id.partition(SIGNATURE)
        parts.append(
            types.Part(
                function_call=types.FunctionCall(name=call.name, args=_json(call.arguments)),
                thought_signature=_unb64(signature) or (SKIP_SIGNATURE if marked else None),
            )
        )
    return parts


def _tool_result(content: str) -> dict[str, Any]:
    """Gemini wants an object: a JSON object as it is, anything else under "result"."""
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"result": content}


def _part(part: str | Image) -> types.Part:
    if isinstance(part, str):
        return types.Part(text=part)
    if part.url.startswith("data:"):
        header, _, data = part.url.partition(",")
        mime = header.removeprefix("data:").split(";", 1)[0]
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise PermanentError("an image's data: URL is not base64", status=400) from exc
        return types.Part(inline_data=types.Blob(mime_type=mime, data=raw))
    mime = mimetypes.guess_type(part.url.split("?", 1)[0])[0] or "image/jpeg"
    return types.Part(file_data=types.FileData(file_uri=part.url, mime_type=mime))


def _json(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text) if text else None
    except (binascii.Error, ValueError):
        return None


class Reading:
    """The chunks of one streamed answer, put together."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: list[ToolCall] = []
        self.finish: str | None = None
        self.usage: types.GenerateContentResponseUsageMetadata | None = None

    def add(self, chunk: types.GenerateContentResponse) -> str:
        """Take one chunk; the text it adds."""
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
        pieces: list[str] = []
        for candidate in (chunk.candidates or [])[:1]:
            if candidate.finish_reason is not None:
                self.finish = str(candidate.finish_reason.value)
            for part in (candidate.content.parts if candidate.content else None) or ():
                if part.function_call is not None:
                    self.calls.append(_tool_call(part))
                elif part.text and not part.thought:  # thought summaries are not the answer
                    pieces.append(part.text)
        text = "".join(pieces)
        if text:
            self.parts.append(text)
        return text

    def completion(self, request: ChatRequest) -> Completion:
        text = "".join(self.parts)
        finish = FINISH_REASONS.get(self.finish or "", (self.finish or "").lower() or None)
        if self.calls and finish == "stop":
            finish = "tool_calls"
        usage = self.usage
        if usage is None or usage.prompt_token_count is None:
            answer = Message("assistant", text, self.calls)
            return Completion(
                text,
                finish,
                tokens.count_request(request),
                tokens.count_text(text) + tokens.count_tool_calls(answer),
                usage_estimated=True,
                tool_calls=self.calls,
            )
        prompt = usage.prompt_token_count + (usage.tool_use_prompt_token_count or 0)
        # Thinking is billed at the output price: it counts as output.
        output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        cached = min(usage.cached_content_token_count or 0, prompt)
        return Completion(
            text, finish, prompt, output, tool_calls=self.calls, cached_input_tokens=cached
        )


def _tool_call(part: types.Part) -> ToolCall:
    call = part.function_call
    assert call is not None
    call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
    if part.thought_signature:
        signature = base64.urlsafe_b64encode(part.thought_signature).decode()
        fits = len(call_id) + len(SIGNATURE) + len(signature) <= MAX_ID
        call_id += SIGNATURE + (signature if fits else "")
    return ToolCall(call_id, call.name or "", json.dumps(call.args or {}))
