"""The integrations group: runs connector actions and records them as jobs.

Exactly one vendor call per action, even under redelivery: an attempt row
is written before the call (`begin_attempt`), and the outcome is stored
with the claim of the event in one transaction. A redelivery finds the
attempt and does not call again; one whose earlier call was cut off
mid-flight fails the job as "outcome unknown" rather than risk acting twice.
Retries inside one attempt happen only when the vendor said it did not act
(429 with its wait, 5xx, refused connection).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from consumers.jobs.ports import JobPorts
from infra.connectors.base import Connector
from infra.db import actions as store
from infra.db import jobs as job_store
from infra.db.models import JobResult, utcnow
from infra.errors import PermanentError, TransientError
from infra.kafka.group import Group
from infra.kafka.policies import Each
from infra.settings import Settings
from infra.vault import Sealed, Vault
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.versions import follow_up

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.5


@dataclass(frozen=True)
class Ports(JobPorts):
    vault: Vault
    connectors: Mapping[str, Connector]


group: Group[Ports] = Group(
    "integrations",
    [topics.INTEGRATION_ACTION_REQUESTED.name],
    lambda settings: Each(settings.integrations_concurrency),
)
SYSTEM = Actor(kind="system", id=group.name)
Request = Envelope[integration_events.ActionRequested]


@group.on(integration_events.ACTION_REQUESTED, integration_events.ActionRequested)
async def handle_action_requested(raw: Request, ports: Ports) -> None:
    request = raw.payload
    if await job_store.is_processed(ports.db, group.name, raw.id):
        await _announce_again(raw, request, ports)
        return
    settings = ports.settings
    lease_s = settings.connector_max_attempts * (
        settings.connector_timeout_s + settings.connector_backoff_max_s
    )
    begun = await _begin(raw, request, ports, lease_s)
    if begun.outcome == "done":
        log.info("action %s: already done; not calling again", request.job_id)
        return
    if begun.outcome == "in_doubt":
        await _finish(
            raw,
            request,
            ports,
            calls=0,
            error=(
                "an earlier call to the vendor was interrupted and its outcome is unknown; "
                "it is not repeated, so the action cannot happen twice"
            ),
        )
        return
    await ports.streams.append(request.job_id, "status", {"status": "running"})
    calls = 0
    try:
        connector, params, credentials = await _prepare(raw, request, ports)

        async def call() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            return await connector.run(request.action, credentials, params, str(raw.id))

        result = await _with_retries(call, settings)
    except (PermanentError, TransientError) as exc:
        await _finish(raw, request, ports, calls=calls, error=str(exc))
        return
    except Exception as exc:
        # Nothing foreseen it (a connector's bug, an answer of an unknown shape): the
        # attempt is settled like any failure, never left `calling` with its job `running`.
        log.exception("action %s: unexpected error", request.job_id)
        error = f"{request.connector}.{request.action} failed: {type(exc).__name__}: {exc}"
        await _finish(raw, request, ports, calls=calls, error=error[:1000])
        return
    await _finish(raw, request, ports, calls=calls, result=result)


async def _begin(
    raw: Request, request: integration_events.ActionRequested, ports: Ports, lease_s: float
) -> store.Begun:
    """Record the attempt; while another delivery holds it, wait for its end or its lease.

    Waiting (rather than returning) matters when the holder dies: its lease
    runs out, and this delivery then settles the job instead of leaving it running.
    """
    while True:
        begun = await store.begin_attempt(ports.db, request.job_id, raw.id, lease_s)
        if begun.outcome != "busy" or begun.attempt is None:
            return begun
        lease_until = begun.attempt.lease_until
        remaining = (lease_until - utcnow()).total_seconds() if lease_until else 0.0
        await asyncio.sleep(min(max(remaining, 0.05), BUSY_POLL_S))


async def _prepare(
    raw: Request, request: integration_events.ActionRequested, ports: Ports
) -> tuple[Connector, BaseModel, BaseModel]:
    connector = ports.connectors.get(request.connector)
    spec = connector.action(request.action) if connector else None
    if connector is None or spec is None:
        raise PermanentError(f"unknown action {request.connector}.{request.action}")
    connection = await store.get_connection(ports.db, raw.tenant_id, request.connection_id)
    if connection is None:
        if await store.was_deleted(ports.db, raw.tenant_id, request.connection_id):
            raise PermanentError(f"connection {request.connection_id} was deleted")
        raise PermanentError(f"connection {request.connection_id} does not exist")
    try:
        params = spec.params.model_validate(request.params)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PermanentError(f"invalid params.{where}: {first['msg']}") from exc
    opened = ports.vault.open(
        Sealed(connection.key_id, connection.sealed), store.connection_context(connection)
    )
    try:
        credentials = connector.credentials.model_validate_json(opened)
    except ValidationError as exc:
        raise PermanentError("stored credentials no longer fit the connector") from exc
    await store.touch_connection(ports.db, connection.id)
    return connector, params, credentials


async def _with_retries(call: Any, settings: Settings) -> dict[str, Any]:
    backoff = wait_exponential_jitter(
        initial=settings.connector_backoff_initial_s, max=settings.connector_backoff_max_s
    )

    def wait(state: RetryCallState) -> float:
        # The vendor's own answer (Retry-After, rate-limit reset) beats our guess.
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, settings.connector_backoff_max_s)
        return float(backoff(state))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(settings.connector_max_attempts),
        wait=wait,
        reraise=True,
    ):
        with attempt:
            result: dict[str, Any] = await call()
            return result
    raise AssertionError("unreachable: tenacity reraises the last error")


async def _finish(
    raw: Request,
    request: integration_events.ActionRequested,
    ports: Ports,
    *,
    calls: int,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    row = None
    if error is None:
        row = JobResult(
            job_id=request.job_id,
            text=json.dumps(result),
            finish_reason="stop",
            provider=request.connector,
            model=f"{request.connector}.{request.action}",
            event_id=raw.id,
        )
    done = await store.finish_attempt(
        ports.db, group.name, raw.id, row, job_id=request.job_id, payload=result, error=error
    )
    if not done:
        return
    metrics = ports.publisher.metrics
    if metrics is not None:  # once per action: a redelivery finds it done above
        outcome = "ok" if error is None else "error"
        metrics.connector_actions.labels(request.connector, request.action, outcome).inc()
    if error is None:
        await ports.streams.append(
            request.job_id,
            "result",
            {
                "text": row.text if row else "",
                "provider": request.connector,
                "model": f"{request.connector}.{request.action}",
                "result": result,
            },
        )
    else:
        await ports.streams.append(request.job_id, "error", {"message": error})
    status = "succeeded" if error is None else "failed"
    await ports.streams.append(request.job_id, "done", {"status": status})
    await _publish_outcome(raw, request, ports, calls=calls, result=result, error=error)


async def _publish_outcome(
    raw: Request,
    request: integration_events.ActionRequested,
    ports: Ports,
    *,
    calls: int,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    finished = integration_events.ActionFinished(
        job_id=request.job_id,
        connector=request.connector,
        action=request.action,
        result=result,
        error=error,
    )
    kind = (
        integration_events.ACTION_SUCCEEDED if error is None else integration_events.ACTION_FAILED
    )
    items = [(topics.AI_JOB_LIFECYCLE.name, _follow_up(raw, kind, finished, "finished"))]
    if calls:
        usage = job_events.UsageRecorded(
            job_id=request.job_id,
            api_key_id=request.api_key_id,
            user_id=None,
            kind="integration_call",
            provider=request.connector,
            model=request.action,
            input_tokens=0,
            output_tokens=0,
            extra={"calls": calls, "status": "succeeded" if error is None else "failed"},
        )
        items.append(
            (topics.USAGE_RECORDED.name, _follow_up(raw, job_events.USAGE_RECORDED, usage, "usage"))
        )
    await ports.publisher.publish_many(items)


async def _announce_again(
    raw: Request, request: integration_events.ActionRequested, ports: Ports
) -> None:
    """Re-publish the outcome of a handled event under the same ids (a crash after commit)."""
    found = await job_store.get_job(ports.db, raw.tenant_id, request.job_id)
    if found is None or found.job.status not in ("succeeded", "failed"):
        return
    result = json.loads(found.result.text) if found.result is not None else None
    await _publish_outcome(raw, request, ports, calls=1, result=result, error=found.job.error)


def _follow_up(raw: Request, type_: str, payload: BaseModel, purpose: str) -> Envelope[Any]:
    return follow_up(raw, type_, payload, purpose, SYSTEM)


@group.gives_up(integration_events.ACTION_REQUESTED)
async def give_up(raw: Request, reason: str, ports: Ports) -> None:
    await _finish(raw, raw.payload, ports, calls=0, error=reason)
