"""The `model-calls-batch` group: runs the chat jobs of batch lines in waves.

A wave is one poll of at most `batch_lane_concurrency` requests: their job
rows turn `running` in one statement, their calls run side by side, their
results and the claims of their events commit in one transaction, and their
outcome events go out in one publish. Offsets are committed after the wave,
so a crash redoes only the wave in hand: the calls that were in flight.

Interactive jobs never wait behind this lane (a topic and workers of its
own), and the lane spends no round trip on what nobody watches: no job
stream entries (a line's job is readable from Postgres; the batch's own
stream carries progress) and no response cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from consumers.jobs import outcomes
from consumers.jobs.outcomes import Outgoing
from consumers.jobs.requests import chat_request, queued_job
from consumers.jobs.retries import announce_retry
from infra.db import job_waves
from infra.db.engine import Database
from infra.db.models import JobResult
from infra.errors import PermanentError, TransientError
from infra.kafka.group import Group
from infra.kafka.policies import Batches, calling_models
from infra.kafka.publisher import Publisher
from infra.providers.base import Completion
from infra.routing.catalog import ModelCatalog
from infra.routing.gateway import Gateway, Served
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.versions import follow_up

log = logging.getLogger(__name__)

Request = Envelope[job_events.JobRequested]


@dataclass(frozen=True)
class Ports:
    db: Database
    publisher: Publisher
    gateway: Gateway  # routes, and prices by its catalog


# A wave is one poll: never more lines than may be in flight at once.
group: Group[Ports] = Group(
    "model-calls-batch",
    [topics.AI_JOB_REQUESTED_BATCH.name],
    lambda settings: Batches(settings.batch_lane_concurrency),
)
SYSTEM = Actor(kind="system", id=group.name)


@group.on(job_events.JOB_REQUESTED, job_events.JobRequested, batch=True, retry=calling_models)
async def handle_wave(events: Sequence[Request], ports: Ports) -> None:
    # A fan-out redone after a crash may put a line on the lane twice.
    unique = list({e.id: e for e in events}.values())
    providers = {e.payload.job_id: _provider(e, ports) for e in unique}
    by_job = {e.payload.job_id: e for e in unique}
    started = await job_waves.start_jobs(ports.db, providers, lambda j: queued_job(by_job[j]))
    running = [e for e in unique if e.payload.job_id in started]
    done = [e for e in unique if e.payload.job_id not in started]
    # "started" need not delay the calls, only precede the outcomes.
    announced = asyncio.ensure_future(
        ports.publisher.publish_many(
            [
                (
                    topics.AI_JOB_LIFECYCLE.name,
                    _follow_up(
                        e,
                        job_events.JOB_STARTED,
                        job_events.JobStarted(
                            job_id=e.payload.job_id,
                            provider=providers[e.payload.job_id] or "",
                            model=e.payload.job.model,
                        ),
                        f"started:{started[e.payload.job_id]}",
                    ),
                )
                for e in running
            ]
        )
    )
    try:
        outcomes = await asyncio.gather(*(_call(e, ports) for e in running))
    finally:
        await asyncio.wait([announced])
    await announced
    results = [o for o in outcomes if isinstance(o, JobResult)]
    failures = [o for o in outcomes if isinstance(o, job_waves.Failure)]
    claimed = await job_waves.finish_jobs(ports.db, group.name, results, failures)
    by_event = {e.id: e for e in running}
    outgoing: Outgoing = []
    for result in results:
        if result.event_id in claimed:
            outgoing += _succeeded(by_event[result.event_id], result)
    for failure in failures:
        if failure.event_id in claimed:
            outgoing += _failed(by_event[failure.event_id], failure.error)
    # Finished before: their outcome may not have reached Kafka before a
    # crash. Published again with the same ids, they are dropped downstream.
    outgoing += await _again(done, ports)
    await ports.publisher.publish_many(outgoing)


def _provider(event: Request, ports: Ports) -> str | None:
    try:
        return ports.gateway.config.route_for(event.payload.job.model).deployments[0].vendor
    except PermanentError:
        return None


async def _call(event: Request, ports: Ports) -> JobResult | job_waves.Failure:
    request = event.payload

    async def on_retry(info: dict[str, Any]) -> None:
        # Part of the audit trail; a lost one does not fail the line.
        await announce_retry(ports.publisher, event, request.job_id, info, SYSTEM)

    try:
        completion, served = await ports.gateway.chat(
            request.job.model, chat_request(request.job), _no_delta, on_retry
        )
        return _result(event, completion, served, ports.gateway.catalog)
    except (PermanentError, TransientError) as exc:  # ModelNotPriced too: never a silent $0
        return job_waves.Failure(event.id, request.job_id, str(exc))
    except Exception as exc:
        # One line's unforeseen failure fails that line, not the wave it rides in.
        log.exception("batch line %s: unexpected error", request.job_id)
        error = f"internal error ({type(exc).__name__})"
        return job_waves.Failure(event.id, request.job_id, error)


async def _no_delta(text: str) -> None:
    return None


def _result(
    event: Request, completion: Completion, served: Served, catalog: ModelCatalog
) -> JobResult:
    tokens = (completion.input_tokens, completion.output_tokens)
    cost = catalog.cost(
        served.model,
        served.deployment.model,
        *tokens,
        completion.cached_input_tokens,
        completion.cache_write_input_tokens,
    )
    calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls]
    return JobResult(
        job_id=event.payload.job_id,
        text=completion.text,
        finish_reason=completion.finish_reason,
        provider=served.provider,
        model=served.model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        tool_calls=calls or None,
        event_id=event.id,
    )


def _succeeded(event: Request, result: JobResult) -> Outgoing:
    return outcomes.succeeded(event, event.payload, result, SYSTEM)


def _failed(event: Request, error: str) -> Outgoing:
    return outcomes.failed(event, event.payload.job_id, error, SYSTEM)


async def _again(done: Sequence[Request], ports: Ports) -> Outgoing:
    by_job = {e.payload.job_id: e for e in done}
    outgoing: Outgoing = []
    for job, result in await job_waves.finished(ports.db, list(by_job)):
        event = by_job[job.id]
        if job.request_event_id != event.id:
            continue  # finished by another request: that one announces it
        if result is not None:
            outgoing += _succeeded(event, result)
        else:
            outgoing += _failed(event, job.error or "failed")
    return outgoing


def _follow_up(event: Request, type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    return follow_up(event, type_, payload, purpose, SYSTEM)


@group.gives_up(job_events.JOB_REQUESTED)
async def give_up(event: Request, reason: str, ports: Ports) -> None:
    failure = job_waves.Failure(event.id, event.payload.job_id, reason)
    if await job_waves.finish_jobs(ports.db, group.name, [], [failure]):
        # The batch counts its lines by these outcomes: without it, it never finishes.
        await ports.publisher.publish_many(_failed(event, reason))
