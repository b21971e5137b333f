"""OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models.

Every call is an `ai.job.requested` event handled by the model-calls group,
visible as a job (its id in `X-Ayush-Job-Id`). The request waits for its
job's answer on this process's reply channel (infra.replies.Replies), so no
request holds a Redis connection of its own.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from infra.errors import PermanentError
from infra.live_streams import StreamEvent
from infra.stream_slots import StreamSlot
from producers.ingress import openai_errors as oe
from producers.ingress.auth import authenticate
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError
from producers.ingress.event_streams import slot_stream, take_slot
from producers.ingress.openai_stream import completion_chunks, usage_of, wire_tool_calls
from producers.ingress.plain_route import PlainRoute, json_body
from producers.ingress.scope import scoped_job
from producers.ingress.state import Services, services
from producers.ingress.submission import submit
from schemas import jobs as job_events
from schemas.chat_completions import chat_job
from schemas.ids import uuid7
from schemas.money import usd_text
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
    job = _scoped(caller, body, _build(lambda: chat_job(body, _wants_cache(request, caller))))
    job = _semantic(request, caller, job)
    return await _run(
        request, svc, caller, job, body.model, stream=body.stream, usage=_include_usage(body)
    )


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
            cache=_wants_cache(request, caller),
        )
    )
    job = _scoped(caller, body, job)
    return await _run(request, svc, caller, job, body.model, encoding=body.encoding_format)


# Served as plain routes: each authenticates, then counts the request with its
# tokens against the key's limits in one step (`submit`), after reading its body.
PLAIN_ROUTES: dict[str, tuple[Endpoint, type[BaseModel]]] = {
    "/chat/completions": (chat_completions, ChatCompletionRequest),
    "/embeddings": (embeddings, EmbeddingRequest),
}
for _path, (_endpoint, _body) in PLAIN_ROUTES.items():
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        route_class_override=PlainRoute,
        openapi_extra=json_body(_body),
    )


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


# the request's life ----------------------------------------------------------------
async def _run(
    request: Request,
    svc: Services,
    caller: Caller,
    job: job_events.ChatJob,
    model: str,
    *,
    stream: bool = False,
    usage: bool = False,
    encoding: str = "float",
) -> Response:
    # A stream holds a slot from before its job exists: a refused one costs nothing.
    slot = await take_slot(svc, caller) if stream else None
    try:
        return await _answer(request, svc, caller, job, model, slot, usage=usage, encoding=encoding)
    except BaseException:
        if slot is not None:
            await svc.slots.release(slot)
        raise


async def _answer(
    request: Request,
    svc: Services,
    caller: Caller,
    job: job_events.ChatJob,
    model: str,
    slot: StreamSlot | None,
    *,
    usage: bool,
    encoding: str,
) -> Response:
    job_id = uuid7()
    headers = {"X-Ayush-Job-Id": str(job_id)}
    waiter = svc.replies.waiter(job_id)  # before the job exists: no entry goes unheard
    handed_over = False
    deadline = asyncio.get_running_loop().time() + svc.settings.gateway_wait_timeout_s

    async def next_event() -> StreamEvent:
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter.next()
        except TimeoutError as exc:
            raise oe.OpenAIError(
                504,
                f"no answer within {svc.settings.gateway_wait_timeout_s:g}s; "
                f"the job goes on: GET /v1/jobs/{job_id}",
                "timeout_error",
                "timeout",
                headers=headers,
            ) from exc

    try:
        await submit(
            request,
            svc,
            caller,
            job,
            job_id=job_id,
            reply_to=svc.replies.channel,
            live_text=slot is not None,
            count_request=True,
        )
        first = await _answer_start(next_event)
        if first.type == "error":
            raise _with(oe.from_job_error(first.data), headers)
        if job.cache or job.semantic_cache:
            headers.update(_cache_headers(first.data))
        if slot is not None:
            chunks = completion_chunks(job_id, model, first, next_event, usage)
            response = slot_stream(svc, slot, _forgetting(svc, job_id, chunks), headers)
            handed_over = True
            return response
        result = first
        while result.type == "delta":
            result = await next_event()
        if result.type == "error":
            raise _with(oe.from_job_error(result.data), headers)
        headers["X-Ayush-Cost-Usd"] = usd_text(result.data.get("cost_usd", "0"))
        payload = (
            _embedding_body(result.data, encoding)
            if job.kind == "embedding"
            else _completion_body(job_id, result.data)
        )
        return Response(orjson.dumps(payload), headers=headers, media_type=JSON)
    finally:
        if not handed_over:
            svc.replies.forget(job_id)


async def _answer_start(next_event: Any) -> StreamEvent:
    """The first entry that says something about the answer: text, a result or an error."""
    while True:
        event: StreamEvent = await next_event()
        if event.type in ("delta", "result", "error"):
            return event


async def _forgetting(svc: Services, job_id: uuid.UUID, chunks: Any) -> Any:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        svc.replies.forget(job_id)


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


def _wants_cache(request: Request, caller: Caller) -> bool:
    header = request.headers.get("x-ayush-cache")
    if header is not None:
        return header.strip().lower() in ("true", "1", "yes")
    return bool(caller.settings.get("response_cache", False))


def _semantic(request: Request, caller: Caller, job: job_events.ChatJob) -> job_events.ChatJob:
    """`X-Ayush-Cache: semantic` (or the tenant's `semantic_cache`): the response cache, and
    the semantic cache after it; `X-Ayush-Cache-Threshold` replaces the similarity needed."""
    header = request.headers.get("x-ayush-cache")
    if header is not None:
        wanted = header.strip().lower() == "semantic"
    else:
        wanted = bool(caller.settings.get("semantic_cache", False))
    if not wanted:
        return job
    threshold = request.headers.get("x-ayush-cache-threshold")
    update: dict[str, Any] = {"cache": True, "semantic_cache": True}
    if threshold is not None:
        update["semantic_threshold"] = _threshold(threshold)
    return job.model_copy(update=update)


def _threshold(value: str) -> float:
    try:
        threshold = float(value)
    except ValueError:
        threshold = -1.0
    if not 0 < threshold <= 1:
        raise oe.OpenAIError(
            400,
            "X-Ayush-Cache-Threshold is a similarity above 0 and at most 1",
            "invalid_request_error",
            "invalid_value",
        )
    return threshold


def _cache_headers(first: dict[str, Any]) -> dict[str, str]:
    """What the caches did: `hit` (the response cache), `semantic-hit` with the similarity
    of the cached question, or `miss`."""
    similarity = first.get("similarity")
    if similarity is not None:
        return {"X-Ayush-Cache": "semantic-hit", "X-Ayush-Cache-Similarity": f"{similarity:.4f}"}
    return {"X-Ayush-Cache": "hit" if first.get("cached") else "miss"}


def _include_usage(body: ChatCompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _with(error: oe.OpenAIError, headers: dict[str, str]) -> oe.OpenAIError:
    error.headers = {**headers, **error.headers}
    return error


def _model_card(svc: Services, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": svc.catalog.owner(name)}
