"""The webhook-router group: applies tenants' rules to verified webhooks.

| topic            | event type       | handler             |
|------------------|------------------|---------------------|
| webhook.received | webhook.received | on_webhook_received |
| ai.job.lifecycle | ai.job.succeeded | on_job_succeeded    |

A matching rule starts an AI job (a job row and `ai.job.requested`, as the
ingress does) and/or an integration action, each admitted first against the
tenant's rate limits and budget (admission.py); a refused one fails visibly.
An action that needs the AI result waits for the job's `ai.job.succeeded`,
then reads the result from Postgres. Every row and event it creates has an
id derived from the event that caused it, so a redelivered event re-publishes
the same ids and downstream consumers drop the duplicates.
When the runner gives up on an event, the jobs it created but never requested
are failed (`give_up`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from consumers.webhook_router.admission import Limits
from consumers.webhook_router.routing import (
    GROUP,
    Ports,
    handle_job_succeeded,
    handle_webhook,
)
from infra.db import jobs as job_store
from infra.db import webhooks as store
from infra.kafka.routes import Route
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import RawEnvelope
from schemas.ids import derived_id

TOPICS = [topics.WEBHOOK_RECEIVED.name, topics.AI_JOB_LIFECYCLE.name]

__all__ = ["GROUP", "TOPICS", "Limits", "Ports", "handlers"]


def handlers(ports: Ports) -> Mapping[str, Route]:
    async def on_webhook_received(raw: RawEnvelope) -> None:
        await handle_webhook(raw, ports)

    async def webhook_given_up(raw: RawEnvelope, reason: str) -> None:
        webhook = integration_events.WebhookReceived.model_validate(raw.payload)
        rules = await store.rules_for(ports.db, raw.tenant_id, webhook.endpoint_id)
        await _fail_started(raw.id, [rule.id for rule in rules], reason, ports)

    async def on_job_succeeded(raw: RawEnvelope) -> None:
        await handle_job_succeeded(raw, ports)

    async def job_succeeded_given_up(raw: RawEnvelope, reason: str) -> None:
        succeeded = job_events.JobSucceeded.model_validate(raw.payload)
        run = await store.get_rule_run(ports.db, succeeded.job_id)
        if run is not None:
            await _fail_started(raw.id, [run.rule_id], reason, ports)

    return {
        integration_events.WEBHOOK_RECEIVED: Route(on_webhook_received, give_up=webhook_given_up),
        job_events.JOB_SUCCEEDED: Route(on_job_succeeded, give_up=job_succeeded_given_up),
    }


async def _fail_started(
    event_id: uuid.UUID, rule_ids: list[uuid.UUID], reason: str, ports: Ports
) -> None:
    """Fails the jobs and actions `event_id` created for these rules and never requested.

    Their ids are derived as routing.py derives them: "rule:<id>:job" and "rule:<id>:action-job".
    """
    kinds = ("job", "action-job")
    ids = [derived_id(event_id, f"rule:{rule}:{kind}") for rule in rule_ids for kind in kinds]
    for job_id in await job_store.fail_unpublished(ports.db, ids, reason):
        await ports.streams.append(job_id, "error", {"message": reason})
        await ports.streams.append(job_id, "done", {"status": "failed"})
