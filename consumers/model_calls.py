"""The model-calls group: runs chat and embedding jobs on their deployments, streams the answer.

| topic            | event type       | handler              |
|------------------|------------------|----------------------|
| ai.job.requested | ai.job.requested | handle_job_requested |

Idempotent by event id: the result row and the claim of the event commit in
one transaction; the follow-up events have ids derived from the request's id,
so re-publishing them after a crash is deduplicated downstream. Routing,
retries and fallbacks are the gateway's (infra/routing); a job that asks for
the response cache is answered from it when an identical request of the same
tenant was answered before, at zero cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

from infra.db import jobs as job_store
from infra.db.engine import Database
from infra.db.models import Job, JobResult
from infra.errors import PermanentError, TransientError
from infra.kafka.consumer import Handler
from infra.kafka.publisher import Publisher
from infra.pricing import PriceTable
from infra.providers.base import ChatRequest, Message, Tool, ToolCall
from infra.redis import JobStreams, ResponseCache
from infra.routing.gateway import Gateway, Served
from infra.settings import Settings
from schemas import jobs as ev
from schemas import topics
from schemas.envelope import Actor, Envelope, RawEnvelope
from schemas.ids import derived_id, uuid7
from schemas.versions import schema_version

log = logging.getLogger(__name__)

GROUP = "model-calls"
TOPICS = [topics.AI_JOB_REQUESTED.name]
SYSTEM = Actor(kind="system", id=GROUP)


@dataclass(frozen=True)
class Ports:
    settings: Settings
    db: Database
    streams: JobStreams
    publisher: Publisher
    gateway: Gateway
    prices: PriceTable
    cache: ResponseCache
    # Replay side mode: routes the request and stops there. No provider call,
    # no stream, no event: replaying history must not bill anyone twice.
    replay: bool = False


def handlers(ports: Ports) -> Mapping[str, Handler]:
    async def on_job_requested(raw: RawEnvelope) -> None:
        await handle_job_requested(raw, ports)

    return {ev.JOB_REQUESTED: on_job_requested}


@dataclass
class _Answer:
    result: JobResult
    embeddings: list[list[float]] | None = None


async def handle_job_requested(raw: RawEnvelope, ports: Ports) -> None:
    request = ev.JobRequested.model_validate(raw.payload)
    if ports.replay:
        _replay(request, ports)
        return
    job = request.job
    try:
        route = ports.gateway.config.route_for(job.model)
    except PermanentError as exc:
        route, unknown = None, exc
    provider = route.deployments[0].provider if route else None
    attempt = await job_store.start_job(ports.db, _job_row(raw, request), provider=provider)
    if attempt == 0:
        # The job is finished. If this very event was handled, its follow-ups may
        # not have reached Kafka before a crash: publish them again.
        if await job_store.is_processed(ports.db, GROUP, raw.id):
            await _announce_again(raw, request, ports)
        return
    if route is None or provider is None:
        await _fail(raw, request, str(unknown), ports, status=404)
        return
    await _emit(ports, request, "status", {
        "status": "running", "provider": provider, "model": job.model, "attempt": attempt,
    })  # fmt: skip
    # The broker's acknowledgement of "started" is awaited alongside the call,
    # not before it: it need not delay the answer, only precede the outcome.
    started = asyncio.ensure_future(ports.publisher.publish(
        topics.AI_JOB_LIFECYCLE.name,
        _follow_up(raw, ev.JOB_STARTED, ev.JobStarted(
            job_id=request.job_id, provider=provider, model=job.model
        ), f"started:{attempt}"),
    ))  # fmt: skip
    try:
        key = cache_key(raw.tenant_id, job, ports.gateway.config.canonical(job.model))
        answer = await _from_cache(raw, request, key, ports) if job.cache else None
        cached = answer is not None
        if answer is None:
            answer = await _call(raw, request, ports)
    except (PermanentError, TransientError) as exc:
        await started
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        await _fail(raw, request, str(exc), ports, status=exc.status, retry_after=retry_after)
        return
    finally:
        if not started.done():
            await asyncio.wait([started])
    await started
    if not await job_store.complete_job(ports.db, GROUP, raw.id, answer.result):
        return
    if job.cache and not cached:
        await ports.cache.put(key, _cache_entry(answer), ports.settings.response_cache_ttl_s)
    await _announce_success(raw, request, answer, ports)


def _replay(request: ev.JobRequested, ports: Ports) -> None:
    """Side mode: make the routing decision again and report it, touching nothing."""
    try:
        route = ports.gateway.config.route_for(request.job.model)
    except PermanentError as exc:
        log.info("replay: job %s would fail: %s", request.job_id, exc)
        return
    first = route.deployments[0]
    log.info("replay: job %s would run on %s as %s", request.job_id, first.provider, first.model)


async def _call(raw: RawEnvelope, request: ev.JobRequested, ports: Ports) -> _Answer:
    job = request.job

    async def on_retry(info: dict[str, Any]) -> None:
        # Tells clients to drop the partial text of the failed try.
        await _emit(ports, request, "status", info)
        await _announce_retry(raw, request, info, ports)

    deltas = _Deltas(ports, request)
    on_delta = deltas.add

    if job.kind == "embedding":
        (vectors, tokens), served = await ports.gateway.embed(
            job.model, job.input or [], job.dimensions, on_retry
        )
        result = _result(raw, request, served, ports, "", None, tokens, 0, None)
        return _Answer(result, vectors)
    try:
        completion, served = await ports.gateway.chat(
            job.model, chat_request(job), on_delta, on_retry
        )
    finally:
        await deltas.flushed()
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
    result = _result(
        raw, request, served, ports, completion.text, completion.finish_reason,
        completion.input_tokens, completion.output_tokens, calls or None,
    )  # fmt: skip
    return _Answer(result)


class _Deltas:
    """Text deltas on their way to the job's stream, in order, coalesced.

    An upstream can stream faster than one Redis round trip per token; while
    one append is in flight, the next pieces gather and go as one entry.
    """

    def __init__(self, ports: Ports, request: ev.JobRequested) -> None:
        self._ports = ports
        self._request = request
        self._pending: list[str] = []
        self._sender: asyncio.Task[None] | None = None

    async def add(self, text: str) -> None:
        self._pending.append(text)
        if self._sender is None or self._sender.done():
            if self._sender is not None:
                await self._sender  # surfaces a failed append
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            await _emit(self._ports, self._request, "delta", {"text": text})

    async def flushed(self) -> None:
        if self._sender is not None:
            await self._sender
        if self._pending:
            await self._send()


def chat_request(job: ev.ChatJob) -> ChatRequest:
    forced = job.tool_choice.name if isinstance(job.tool_choice, ev.ForcedTool) else None
    return ChatRequest(
        model=job.model,
        messages=[
            Message(
                m.role,
                m.content,
                tuple(ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls or ()),
                m.tool_call_id,
            )
            for m in job.messages
        ],
        temperature=job.temperature,
        max_tokens=job.max_tokens,
        stop=tuple(job.stop or ()),
        tools=tuple(Tool(t.name, t.description, t.parameters) for t in job.tools or ()),
        tool_choice=job.tool_choice if isinstance(job.tool_choice, str) else None,
        forced_tool=forced,
    )


def _result(
    raw: RawEnvelope, request: ev.JobRequested, served: Served, ports: Ports,
    text: str, finish_reason: str | None, input_tokens: int, output_tokens: int,
    tool_calls: list[dict[str, Any]] | None,
) -> JobResult:  # fmt: skip
    cost = ports.prices.cost(served.model, input_tokens, output_tokens)
    if cost == 0 and ports.prices.price(served.model) is None:
        cost = ports.prices.cost(served.deployment.model, input_tokens, output_tokens)
    return JobResult(
        job_id=request.job_id, text=text, finish_reason=finish_reason, provider=served.provider,
        model=served.model, input_tokens=input_tokens, output_tokens=output_tokens,
        cost_usd=cost, tool_calls=tool_calls, event_id=raw.id,
    )  # fmt: skip


def cache_key(tenant_id: uuid.UUID, job: ev.ChatJob, model: str) -> str:
    """Identical requests of one tenant share a key; labels and user ids do not count."""
    normal = job.model_dump(mode="json", exclude={"user_id", "metadata", "cache"})
    normal["model"] = model
    digest = hashlib.sha256(orjson.dumps(normal, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{tenant_id}:{digest}"


def _cache_entry(answer: _Answer) -> dict[str, Any]:
    r = answer.result
    return {
        "text": r.text, "finish_reason": r.finish_reason, "provider": r.provider,
        "model": r.model, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
        "tool_calls": r.tool_calls, "embeddings": answer.embeddings,
    }  # fmt: skip


async def _from_cache(
    raw: RawEnvelope, request: ev.JobRequested, key: str, ports: Ports
) -> _Answer | None:
    hit = await ports.cache.get(key)
    if hit is None:
        return None
    result = JobResult(
        job_id=request.job_id, text=hit["text"], finish_reason=hit["finish_reason"],
        provider=hit["provider"], model=hit["model"], input_tokens=hit["input_tokens"],
        output_tokens=hit["output_tokens"], cost_usd=Decimal("0"), tool_calls=hit["tool_calls"],
        cached=True, event_id=raw.id,
    )  # fmt: skip
    return _Answer(result, hit.get("embeddings"))


def _job_row(raw: RawEnvelope, request: ev.JobRequested) -> Job:
    job = request.job
    return Job(
        id=request.job_id, tenant_id=raw.tenant_id, api_key_id=request.api_key_id,
        user_id=job.user_id, kind=job.kind, model=job.model, status="queued",
        request=job.model_dump(mode="json"), job_metadata=dict(job.metadata),
        request_event_id=raw.id,
    )  # fmt: skip


async def _emit(ports: Ports, request: ev.JobRequested, type_: str, data: dict[str, Any]) -> None:
    await ports.streams.append(request.job_id, type_, data, notify=request.reply_to)


async def _fail(
    raw: RawEnvelope, request: ev.JobRequested, error: str, ports: Ports,
    *, status: int | None = None, retry_after: float | None = None,
) -> None:  # fmt: skip
    if not await job_store.fail_job(ports.db, GROUP, raw.id, request.job_id, error):
        return
    await _emit(ports, request, "error", {
        "message": error, "status": status, "retry_after": retry_after,
    })  # fmt: skip
    await _emit(ports, request, "done", {"status": "failed"})
    await ports.publisher.publish(
        topics.AI_JOB_LIFECYCLE.name,
        _follow_up(raw, ev.JOB_FAILED, ev.JobFailed(
            job_id=request.job_id, error=error, retryable=status in (429, 502, 503, 504),
            status=status,
        ), "failed"),
    )  # fmt: skip


async def _announce_success(
    raw: RawEnvelope, request: ev.JobRequested, answer: _Answer, ports: Ports
) -> None:
    result = answer.result
    usage = ev.TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    data: dict[str, Any] = {
        "text": result.text, "finish_reason": result.finish_reason, "provider": result.provider,
        "model": result.model, "usage": usage.model_dump(), "tool_calls": result.tool_calls,
        "cached": result.cached, "cost_usd": str(result.cost_usd),
    }  # fmt: skip
    if answer.embeddings is not None:
        data["embeddings"] = answer.embeddings
    await _emit(ports, request, "result", data)
    await _emit(ports, request, "done", {"status": "succeeded"})
    await _publish_outcome(raw, request, result, ports)


async def _publish_outcome(
    raw: RawEnvelope, request: ev.JobRequested, result: JobResult, ports: Ports
) -> None:
    usage = ev.TokenUsage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    kind = "embedding" if request.job.kind == "embedding" else "model_call"
    await ports.publisher.publish_many(
        [
            (
                topics.AI_JOB_LIFECYCLE.name,
                _follow_up(raw, ev.JOB_SUCCEEDED, ev.JobSucceeded(
                    job_id=request.job_id, provider=result.provider, model=result.model,
                    usage=usage, finish_reason=result.finish_reason, cached=result.cached,
                    text=result.text, cost_usd=result.cost_usd,
                ), "succeeded"),
            ),
            (
                topics.USAGE_RECORDED.name,
                _follow_up(raw, ev.USAGE_RECORDED, ev.UsageRecorded(
                    job_id=request.job_id, api_key_id=request.api_key_id,
                    user_id=request.job.user_id, kind=kind, provider=result.provider,
                    model=result.model, input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens, cost_usd=result.cost_usd,
                    cached=result.cached,
                ), "usage"),
            ),
        ]
    )  # fmt: skip


async def _announce_again(raw: RawEnvelope, request: ev.JobRequested, ports: Ports) -> None:
    """A redelivered, already handled event: re-publish its outcome with the same ids.

    Covers a crash between the database commit and the publish; consumers of
    the follow-up events drop the duplicates by id.
    """
    found = await job_store.get_job(ports.db, raw.tenant_id, request.job_id)
    if found is not None and found.result is not None:
        await _publish_outcome(raw, request, found.result, ports)


async def _announce_retry(
    raw: RawEnvelope, request: ev.JobRequested, info: dict[str, Any], ports: Ports
) -> None:
    """Retries (and fallbacks) are part of the audit trail; a lost one must not fail the job."""
    payload = ev.JobRetrying(
        job_id=request.job_id, provider=str(info.get("provider", "")),
        attempt=max(2, int(info.get("attempt", 2))), error=str(info.get("error", ""))[:2000],
    )  # fmt: skip
    try:
        await ports.publisher.publish(
            topics.AI_JOB_LIFECYCLE.name,
            _follow_up(raw, ev.JOB_RETRYING, payload, f"retrying:{uuid7()}"),
        )
    except TransientError as exc:
        log.warning("job %s: retry event not published: %s", request.job_id, exc)


def _follow_up(raw: RawEnvelope, type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    return Envelope[Any](
        id=derived_id(raw.id, purpose),
        type=type_,
        version=schema_version(payload),
        tenant_id=raw.tenant_id,
        actor=SYSTEM,
        correlation_id=raw.correlation_id,
        causation_id=raw.id,
        payload=payload,
    )
