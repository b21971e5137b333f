"""Request bodies of the OpenAI-compatible routes, in OpenAI's own wire shape.

Lenient about fields we do not use (clients send many), strict about the ones
we do. The ingress translates them into a ChatJob.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from schemas.images import check_image_url
from schemas.jobs import BuiltinTools
from schemas.memory import MemoryContext
from schemas.request import RequestModel


class _Wire(RequestModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FunctionCall(_Wire):
    name: str
    arguments: str = "{}"


class WireToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class WireImageUrl(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Wire):
    type: str
    text: str | None = None
    image_url: WireImageUrl | None = None


class WireJsonSchema(_Wire):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class WireResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: WireJsonSchema | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> WireResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('"json_schema" is required when type is "json_schema"')
        return self


class WireMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _supported_parts(self) -> WireMessage:
        # Better refused than answered as if the sound (or file) were not there.
        for part in self.content if isinstance(self.content, list) else ():
            if part.type not in ("text", "image_url"):
                raise ValueError(
                    f'content parts of type "{part.type}" are not supported: text and image_url'
                )
            if part.type == "image_url":
                if part.image_url is None:
                    raise ValueError('an "image_url" part needs its "image_url": {"url": ...}')
                check_image_url(part.image_url.url)
        return self

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(p.type == "image_url" for p in self.content)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class FunctionDefinition(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class WireTool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_Wire):
    include_usage: bool = False


class _WithJobFields(_Wire):
    """OpenAI's `user` and `metadata`, and `user_id` as `POST /v1/jobs` names it."""

    user: str | None = Field(default=None, max_length=200)
    metadata: dict[str, str] | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_user(self) -> _WithJobFields:
        if self.user is not None and self.user_id is not None and self.user != self.user_id:
            raise ValueError('"user" and "user_id" name different users: send one')
        return self

    def end_user(self) -> str | None:
        return self.user_id or self.user


class ChatCompletionRequest(_WithJobFields):
    model: str = Field(min_length=1, max_length=200)
    messages: list[WireMessage] = Field(min_length=1, max_length=10_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: WireResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[WireTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    # With `model: "auto"` (a named route): a hint that picks a stronger tier.
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    # Ayush's job extension (the official SDKs send it in `extra_body`), as on `POST /v1/jobs`.
    memory: MemoryContext | None = None
    # Ayush's built-in tools the model may call (as on `POST /v1/jobs`).
    ayush_tools: list[BuiltinTools] | None = Field(default=None, max_length=8)


class EmbeddingRequest(_WithJobFields):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
