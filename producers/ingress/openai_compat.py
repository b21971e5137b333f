"""OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models.

Every call is an `ai.job.requested` event handled by the model-calls group,
visible as a job (its id in `X-Ayush-Job-Id`). The request waits for its
job's answer on this process's reply channel (infra.replies.Replies), so no
request holds a Redis connection of its own (producers.ingress.model_call, the
path Anthropic's `/v1/messages` shares).
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from infra.errors import PermanentError
from infra.live_streams import StreamEvent
from producers.ingress import openai_errors as oe
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.model_call import NextEvent, run, semantic, wants_cache
from producers.ingress.openai_stream import completion_chunks, usage_of, wire_tool_calls
from producers.ingress.plain_route import add_plain_routes
from producers.ingress.scope import scoped_job
from producers.ingress.state import Services, services
from schemas import jobs as job_events
from schemas.chat_completions import chat_job
from schemas.openai import ChatCompletionRequest, EmbeddingRequest

router = APIRouter(prefix="/v1", tags=["openai"])
W = TypeVar("W", bound=BaseModel)
JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


@oe.openai_shaped
async def chat_completions(request: Request) -> Response:
    svc = services(request)
    caller = await authenticate(request, svc)
    body = await oe.openai_body(request, ChatCompletionRequest)
    job = _scoped(caller, body, _build(lambda: chat_job(body, wants_cache(request, caller))))
    job = semantic(request, caller, job)
    shape = _Completion(body.model, _include_usage(body))
    return await run(request, svc, caller, job, shape, stream=body.stream)


@oe.openai_shaped
async def embeddings(request: Request) -> Response:
    svc = services(request)
    caller = await authenticate(request, svc)
    body = await oe.openai_body(request, EmbeddingRequest)
    texts = [body.input] if isinstance(body.input, str) else body.input
    job = _build(
        lambda: job_events.ChatJob(
            kind="embedding",
            model=body.model,
            input=texts,
            dimensions=body.dimensions,
            user_id=body.end_user(),
            metadata=body.metadata or {},
            cache=wants_cache(request, caller),
        )
    )
    job = _scoped(caller, body, job)
    return await run(request, svc, caller, job, _Embeddings(body.encoding_format))


# Served as plain routes: each authenticates, then counts the request with its
# tokens against the key's limits in one step (`submit`), after reading its body.
PLAIN_ROUTES: dict[str, tuple[Endpoint, type[BaseModel]]] = {
    "/chat/completions": (chat_completions, ChatCompletionRequest),
    "/embeddings": (embeddings, EmbeddingRequest),
}
add_plain_routes(router, PLAIN_ROUTES)


@router.get("/models")
async def list_models(request: Request) -> Response:
    svc = services(request)
    await _caller(request, svc)
    data = [_model_card(svc, name) for name in svc.model_names()]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)


@router.get("/models/{model:path}")
async def get_model(model: str, request: Request) -> Response:
    svc = services(request)
    await _caller(request, svc)
    try:
        svc.catalog.check(model)
    except PermanentError as exc:  # unknown or unpriced: not a model a request may name
        raise oe.OpenAIError(
            404, str(exc), "invalid_request_error", "model_not_found", "model"
        ) from exc
    return Response(orjson.dumps(_model_card(svc, model)), media_type=JSON)


# answer shapes -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Completion:
    """A chat completion, whole or as `chat.completion.chunk` events."""

    model: str
    usage: bool  # a streamed answer ends with its usage (stream_options.include_usage)

    def stream(
        self, job_id: uuid.UUID, first: StreamEvent, next_event: NextEvent
    ) -> AsyncIterator[bytes]:
        return completion_chunks(job_id, self.model, first, next_event, self.usage)

    def body(self, job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
        return _completion_body(job_id, result)


@dataclass(frozen=True)
class _Embeddings:
    encoding: str

    def stream(
        self, job_id: uuid.UUID, first: StreamEvent, next_event: NextEvent
    ) -> AsyncIterator[bytes]:
        raise AssertionError("embeddings are never streamed")

    def body(self, job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
        return _embedding_body(result, self.encoding)


# translation ------------------------------------------------------------------------
def _completion_body(job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
    calls = wire_tool_calls(result)
    message: dict[str, Any] = {"role": "assistant", "content": result.get("text") or None}
    if calls:
        message["tool_calls"] = calls
    finish = result.get("finish_reason") or ("tool_calls" if calls else "stop")
    return {
        "id": f"chatcmpl-{job_id.hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage_of(result),
    }


def _embedding_body(result: dict[str, Any], encoding: str) -> dict[str, Any]:
    vectors = result.get("embeddings") or []
    tokens = usage_of(result)["prompt_tokens"]
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, encoding)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": result.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the official SDKs ask for by default
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


# request helpers ----------------------------------------------------------------------
async def _caller(request: Request, svc: Services) -> Caller:
    try:
        return await authenticate(request, svc)
    except ApiError as exc:
        raise oe.from_api_error(exc) from exc


def _scoped(
    caller: Caller, body: ChatCompletionRequest | EmbeddingRequest, job: job_events.ChatJob
) -> job_events.ChatJob:
    """A signed-in user's job is theirs: another user in `user` (or `user_id`) is 403."""
    return scoped_job(caller, job, "user_id" if body.user_id is not None else "user")


def _build(make: Any) -> job_events.ChatJob:
    try:
        job: job_events.ChatJob = make()
    except ValidationError as exc:
        raise oe.invalid(exc) from exc
    return job


def _include_usage(body: ChatCompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _model_card(svc: Services, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": svc.catalog.owner(name)}
