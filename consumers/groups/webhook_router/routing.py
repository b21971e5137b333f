"""Turning one webhook into AI jobs and connector actions, by the tenant's rules."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumers.groups.webhook_router.admission import (
    BUDGET_EXCEEDED,
    Limits,
    admit_action,
    admit_job,
)
from consumers.groups.webhook_router.templates import matches, render, render_text
from infra.channels import Mirror, job_status_feed
from infra.db import actions as action_store
from infra.db import jobs as job_store
from infra.db import webhooks as store
from infra.db.engine import Database
from infra.db.integration_models import Rule, RuleRun
from infra.db.models import Job
from infra.kafka.publisher import Publisher
from infra.live_streams import JobStreams
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import derived_id
from schemas.versions import follow_up, job_requested

log = logging.getLogger(__name__)

GROUP = "webhook-router"
SYSTEM = Actor(kind="system", id=GROUP)


@dataclass(frozen=True)
class Ports:
    db: Database
    streams: JobStreams
    publisher: Publisher
    # The tenant's rate limits and budget, which every job and action a rule starts passes.
    limits: Limits


async def handle_webhook(raw: Envelope[integration_events.WebhookReceived], ports: Ports) -> None:
    webhook = raw.payload
    payload = webhook.payload or {}
    context = {
        "payload": payload,
        "event_type": webhook.event_type,
        "source": webhook.source,
        "delivery_id": webhook.delivery_id,
    }
    for rule in await store.rules_for(ports.db, raw.tenant_id, webhook.endpoint_id):
        if rule.event_type not in ("*", webhook.event_type) or not matches(rule.filter, payload):
            continue
        if rule.job is not None:
            await _start_job(raw, rule, context, ports)
        elif rule.action is not None:
            params = render(rule.action["params"], context)
            await request_action(raw, raw.tenant_id, rule.action, params, f"rule:{rule.id}", ports)


async def handle_job_succeeded(raw: Envelope[job_events.JobSucceeded], ports: Ports) -> None:
    succeeded = raw.payload
    run = await store.get_rule_run(ports.db, succeeded.job_id)
    if run is None:
        return  # not a job a rule is waiting on
    found = await job_store.get_job(ports.db, run.tenant_id, run.job_id)
    if found is None or found.result is None:
        log.warning("job %s succeeded but has no stored result", run.job_id)
        return
    context = {**run.context, "result": found.result.text}
    params = render(run.action["params"], context)
    await request_action(raw, run.tenant_id, run.action, params, f"rule:{run.rule_id}", ports)


async def _start_job(raw: Envelope[Any], rule: Rule, context: dict[str, Any], ports: Ports) -> None:
    assert rule.job is not None
    template = integration_events.RuleJob.model_validate(rule.job)
    metadata = {"rule_id": str(rule.id), "webhook_event_id": str(raw.id)}
    action = rule.action

    async def wait_for_answer(stored: Job) -> None:
        if action is None:
            return
        # Saved before the job is requested, so its outcome always finds the run.
        await store.save_rule_run(
            ports.db,
            RuleRun(
                job_id=stored.id,
                tenant_id=raw.tenant_id,
                rule_id=rule.id,
                webhook_event_id=raw.id,
                context=context,
                action=action,
            ),
        )

    await start_job(raw, f"rule:{rule.id}", template, context, metadata, ports, wait_for_answer)


async def start_job(
    raw: Envelope[Any],
    purpose: str,
    template: integration_events.RuleJob,
    context: dict[str, Any],
    metadata: dict[str, str],
    ports: Ports,
    before_request: Callable[[Job], Awaitable[None]] | None = None,
    user_id: str | None = None,
) -> None:
    """Start the AI job of a template (a rule's, a schedule's) for the event `raw`.

    Every id is derived from `raw` and `purpose` ("<purpose>:job", ":request",
    ":refused"), so the same event starts the same job once. `before_request` runs
    after the row is stored and before the job is requested (to save what waits on it).
    `user_id`: the user the job runs for (a user's schedule): billed to them too.
    """
    messages = [job_events.ChatMessage(role="user", content=render_text(template.prompt, context))]
    if template.system:
        messages.insert(0, job_events.ChatMessage(role="system", content=template.system))
    chat = job_events.ChatJob(
        model=template.model, messages=messages, metadata=metadata, user_id=user_id
    )
    job_id = derived_id(raw.id, f"{purpose}:job")
    # The job's own correlation: its events are keyed by the job, not the cause.
    event = job_requested(
        job_events.JobRequested(job_id=job_id, job=chat),
        raw.tenant_id,
        SYSTEM,
        event_id=derived_id(raw.id, f"{purpose}:request"),
        causation_id=raw.id,
    )
    stored, created = await job_store.insert_job(
        ports.db,
        Job(
            id=job_id,
            tenant_id=raw.tenant_id,
            user_id=user_id,
            kind=chat.kind,
            model=chat.model,
            status="queued",
            request=chat.model_dump(mode="json"),
            job_metadata=dict(chat.metadata),
            idempotency_key=f"{purpose}:{raw.id}",
            request_event_id=event.id,
        ),
    )
    if before_request is not None:
        await before_request(stored)

    def refusal(error: str) -> Envelope[Any]:
        status = 402 if error.startswith(BUDGET_EXCEEDED) else 429
        failed = job_events.JobFailed(job_id=job_id, error=error, status=status)
        return follow_up(
            raw,
            job_events.JOB_FAILED,
            failed,
            f"{purpose}:refused",
            SYSTEM,
            correlation_id=job_id,
        )

    def admit() -> Awaitable[str | None]:
        return admit_job(ports.limits, raw.tenant_id, job_id, chat)

    await _admit_and_publish(stored, created, admit, refusal, topics.AI_JOB_REQUESTED, event, ports)


async def _admit_and_publish(
    stored: Job,
    created: bool,
    admit: Callable[[], Awaitable[str | None]],
    refusal: Callable[[str], Envelope[Any]],
    topic: topics.Topic,
    event: Envelope[Any],
    ports: Ports,
) -> None:
    """Publish the request of a job a rule started, once admission lets it through; else
    fail the job visibly. A redelivery decides the same: a refused row stays refused."""
    if stored.published_at is not None:
        return
    refused = stored.error if stored.status == "failed" else None
    if refused is None:
        refused = await admit()
    if refused is not None:
        feed = job_status_feed(
            stored.tenant_id, stored.user_id, stored.id, "failed", stored.kind, stored.model
        )
        await _refuse(stored.id, refused, refusal(refused), ports, feed)
        return
    if created:
        feed = job_status_feed(
            stored.tenant_id, stored.user_id, stored.id, "queued", stored.kind, stored.model
        )
        await ports.streams.append(stored.id, "status", {"status": "queued"}, also=feed)
    await ports.publisher.publish(topic.name, event)
    await job_store.mark_published(ports.db, stored.id)


async def _refuse(
    job_id: uuid.UUID,
    error: str,
    failed: Envelope[Any],
    ports: Ports,
    feed: list[Mirror] | None = None,
) -> None:
    """A job that admission refused fails visibly: its row, its stream and its outcome.

    Asked again (a redelivered webhook), it announces the same outcome under the same id.
    """
    if await job_store.fail_job(ports.db, GROUP, failed.id, job_id, error):
        code = error.split(":", 1)[0]
        await ports.streams.append_many(
            job_id,
            [("error", {"message": error, "code": code}), ("done", {"status": "failed"})],
            also=feed,
        )
    await ports.publisher.publish(topics.AI_JOB_LIFECYCLE.name, failed)


async def request_action(
    raw: Envelope[Any],
    tenant_id: uuid.UUID,
    action: dict[str, Any],
    params: Any,
    purpose: str,
    ports: Ports,
) -> None:
    connection_id = uuid.UUID(str(action["connection_id"]))
    connection = await action_store.get_connection(ports.db, tenant_id, connection_id)
    if connection is None:
        log.warning("rule %s: connection %s is gone; action skipped", purpose, connection_id)
        return
    job_id = derived_id(raw.id, f"{purpose}:action-job")
    payload = integration_events.ActionRequested(
        job_id=job_id,
        connection_id=connection_id,
        connector=connection.connector,
        action=action["action"],
        params=params if isinstance(params, dict) else {},
    )
    event = follow_up(
        raw,
        integration_events.ACTION_REQUESTED,
        payload,
        f"{purpose}:action-request",
        SYSTEM,
        correlation_id=job_id,
        tenant_id=tenant_id,
    )
    stored, created = await job_store.insert_job(
        ports.db,
        action_store.action_job(
            job_id=job_id,
            tenant_id=tenant_id,
            api_key_id=None,
            connector=connection.connector,
            action=payload.action,
            request=payload.model_dump(mode="json", include={"connection_id", "action", "params"}),
            event_id=event.id,
            idempotency_key=f"{purpose}:action:{raw.id}",
        ),
    )

    def refusal(error: str) -> Envelope[Any]:
        finished = integration_events.ActionFinished(
            job_id=job_id, connector=connection.connector, action=payload.action, error=error
        )
        return follow_up(
            raw,
            integration_events.ACTION_FAILED,
            finished,
            f"{purpose}:action-refused",
            SYSTEM,
            correlation_id=job_id,
            tenant_id=tenant_id,
        )

    def admit() -> Awaitable[str | None]:
        return admit_action(ports.limits, tenant_id)

    await _admit_and_publish(
        stored, created, admit, refusal, topics.INTEGRATION_ACTION_REQUESTED, event, ports
    )
