"""Payloads of the job events."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from schemas.conversations import ResponseTurn
from schemas.images import check_image_url
from schemas.memory import MemoryContext
from schemas.money import Usd
from schemas.request import RequestModel

JOB_REQUESTED = "ai.job.requested"
JOB_STARTED = "ai.job.started"
JOB_SUCCEEDED = "ai.job.succeeded"
JOB_FAILED = "ai.job.failed"
JOB_RETRYING = "ai.job.retrying"
USAGE_RECORDED = "usage.recorded"

JobStatus = Literal["queued", "running", "succeeded", "failed"]
# Every kind a job row may have: chat and embedding jobs, Responses API turns,
# and the actions webhook rules start.
JobKind = Literal["chat", "embedding", "response", "action"]


class ToolCall(RequestModel):
    """A function call the model asked for; `arguments` is JSON text, as OpenAI sends it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(max_length=200)
    name: str = Field(max_length=200)
    arguments: str = Field(default="{}", max_length=1_000_000)


class CacheControl(RequestModel):
    """Anthropic's prompt-cache breakpoint: the prompt up to here may be cached (and read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None


class Tool(RequestModel):
    """A function the model may call, described by a JSON Schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=100_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    # A prompt-cache breakpoint after this tool (the vendors without one ignore it).
    cache_control: CacheControl | None = None


class ForcedTool(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class ResponseFormat(RequestModel):
    """The shape the answer must take: OpenAI's `response_format`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    # With "json_schema": OpenAI's {"name", "schema", "strict", "description"}.
    json_schema: dict[str, Any] | None = None


class TextPart(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text"] = "text"
    text: str = Field(max_length=1_000_000)


class ImagePart(RequestModel):
    """An image by URL: https, or inline as a data URL (base64)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["image"] = "image"
    url: str = Field(min_length=1, max_length=12_000_000)
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _fetchable_or_inline(cls, value: str) -> str:
        return check_image_url(value)


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(default="", max_length=1_000_000)
    # A message with images: its text and images in their order. `content` is
    # then its text alone, for whatever reads text only (memory, counting).
    parts: list[Part] | None = Field(default=None, max_length=100)
    # An assistant turn that called tools, and the answer of one tool to it.
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=200)
    # A prompt-cache breakpoint at the end of this message (the vendors without one ignore it).
    cache_control: CacheControl | None = None


class RouteChoice(RequestModel):
    """The model a named route (`model: "auto"` …) chose for a job, and the rule that decided.

    Set by the ingress when it routes the job (whatever a body says is replaced).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: str = Field(max_length=200)
    model: str = Field(max_length=200)
    tier: int = Field(ge=0)
    rule: str = Field(max_length=200)


Effort = Literal["minimal", "low", "medium", "high"]
# The platform's own tools a request may offer the model, run by the worker itself
# (`ayush_tools`): "tasks" offers create_task, complete_task and list_tasks.
BuiltinTools = Literal["tasks"]
# The tools each offers: a request's own tools may not take their names.
BUILTIN_TOOL_NAMES: dict[str, tuple[str, ...]] = {
    "tasks": ("create_task", "complete_task", "list_tasks"),
}


class ChatJob(RequestModel):
    """What to run: a chat completion or an embedding. The ingress body and the event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["chat", "embedding", "response"] = "chat"
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(
        default_factory=list, max_length=10_000, validate_default=True
    )
    user_id: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    # Anthropic's: sample from the k likeliest tokens (the other vendors have no such setting).
    top_k: int | None = Field(default=None, ge=1)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    stop: list[str] | None = Field(default=None, max_length=4)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | ForcedTool | None = None
    # embedding jobs: the texts to embed
    input: list[str] | None = Field(default=None, max_length=2048, validate_default=True)
    dimensions: int | None = Field(default=None, ge=1, le=10_000)
    # Serve an identical earlier answer from the response cache (costs nothing).
    cache: bool = False
    # Also serve an earlier answer to a question of the same meaning (the semantic cache,
    # beside the response cache); `semantic_threshold` replaces the platform's similarity.
    semantic_cache: bool = False
    semantic_threshold: float | None = Field(default=None, gt=0, le=1)
    # Recall the user's memories into the prompt; with `remember`, store the exchange.
    memory: MemoryContext | None = None
    # A "response" job (POST /v1/responses): its new input items and where its history
    # comes from; its messages are assembled by the worker from that history.
    response: ResponseTurn | None = Field(default=None, validate_default=True)
    # A hint for a named route (`model: "auto"`): how hard the request is.
    reasoning_effort: Effort | None = None
    # The route's choice, when `model` was a route's name (set by the ingress).
    route: RouteChoice | None = None
    # Built-in tools the model may call; the worker runs them and calls the model again
    # with their results (a chat job of a user only: tasks are the user's).
    ayush_tools: list[BuiltinTools] | None = Field(
        default=None, max_length=8, validate_default=True
    )

    @field_validator("messages")
    @classmethod
    def _chat_has_messages(cls, value: list[ChatMessage], info: ValidationInfo) -> Any:
        if info.data.get("kind", "chat") == "chat" and not value:
            raise ValueError("a chat job needs at least one message")
        return value

    @field_validator("response")
    @classmethod
    def _response_has_turn(cls, value: ResponseTurn | None, info: ValidationInfo) -> Any:
        if (info.data.get("kind") == "response") != (value is not None):
            raise ValueError("a response job, and only one, carries its turn")
        return value

    @field_validator("ayush_tools")
    @classmethod
    def _tools_of_a_chat(cls, value: list[str] | None, info: ValidationInfo) -> Any:
        if value and info.data.get("kind", "chat") != "chat":
            raise ValueError("built-in tools run in chat jobs only")
        theirs = {tool.name for tool in info.data.get("tools") or ()}
        for kind in value or ():
            taken = sorted(theirs & set(BUILTIN_TOOL_NAMES[kind]))
            if taken:
                raise ValueError(f"the request's tool {taken[0]} has a built-in tool's name")
        return sorted(set(value)) if value else None

    @field_validator("input")
    @classmethod
    def _embedding_has_input(cls, value: list[str] | None, info: ValidationInfo) -> Any:
        if info.data.get("kind") == "embedding" and not value:
            raise ValueError("an embedding job needs at least one text")
        return value


def other_user(job: ChatJob, user_id: str) -> str | None:
    """The field of `job` naming a user other than `user_id` (`user_id`, `memory.user_id`)."""
    if job.user_id is not None and job.user_id != user_id:
        return "user_id"
    if job.memory is not None and job.memory.user_id != user_id:
        return "memory.user_id"
    return None


def as_user(job: ChatJob, user_id: str) -> ChatJob:
    """The job run for `user_id`: its user (and its memory's user) set to it."""
    memory = job.memory.model_copy(update={"user_id": user_id}) if job.memory else None
    return job.model_copy(update={"user_id": user_id, "memory": memory})


class JobRequested(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    job: ChatJob
    # Where a waiting caller listens for the job's stream entries (the
    # OpenAI-compatible routes): an opaque channel name, or None.
    reply_to: str | None = None
    # Whether the answer's text goes to the job's stream piece by piece as it
    # comes. A caller that waits for the whole answer (an OpenAI-compatible
    # call without `stream`) turns it off: the stream then carries the status,
    # the result and the end, not the words in between.
    live_text: bool = True


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0


class JobStarted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    provider: str
    model: str


class JobSucceeded(BaseModel):
    """Version 2 carries the answer and its cost, so the jobs projection can be
    rebuilt from events alone, without calling the model again."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA_VERSION: ClassVar[int] = 2

    job_id: uuid.UUID
    provider: str
    model: str
    usage: TokenUsage
    finish_reason: str | None = None
    # None only in events upcast from version 1, which did not record them.
    text: str | None = None
    cost_usd: Usd | None = None
    cached: bool = False
    # The job's user, when it has one: the answer is sealed with that user's data key.
    user_id: str | None = None

    @staticmethod
    def upcast_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "text": None, "cost_usd": None}


class JobRetrying(BaseModel):
    """A provider call failed with a transient error and is tried again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    provider: str
    attempt: int = Field(description="the attempt about to start, 2 or more")
    error: str


class JobFailed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    error: str
    retryable: bool = False
    # The upstream HTTP status behind the failure, when there was one.
    status: int | None = None


class UsageRecorded(BaseModel):
    """One billable act. Cost is a decimal string: money is never a float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: uuid.UUID
    api_key_id: uuid.UUID | None
    user_id: str | None
    kind: Literal["model_call", "embedding", "integration_call"] = "model_call"
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Usd = Decimal("0")
    cached: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)
