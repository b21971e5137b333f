"""The webhook-router group: applies tenants' rules to verified webhooks.

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

from consumers.groups.webhook_router.admission import Limits
from consumers.groups.webhook_router.routing import (
    GROUP,
    Ports,
    handle_job_succeeded,
    handle_webhook,
)
from infra.db import jobs as job_store
from infra.db import webhooks as store
from infra.kafka.group import Group
from infra.kafka.policies import Each
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id

__all__ = ["Limits", "Ports", "group"]

group: Group[Ports] = Group(
    GROUP, [topics.WEBHOOK_RECEIVED.name, topics.AI_JOB_LIFECYCLE.name], lambda settings: Each(16)
)
group.on(integration_events.WEBHOOK_RECEIVED, integration_events.WebhookReceived)(handle_webhook)
group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)(handle_job_succeeded)


@group.gives_up(integration_events.WEBHOOK_RECEIVED)
async def webhook_given_up(
    raw: Envelope[integration_events.WebhookReceived], reason: str, ports: Ports
) -> None:
    rules = await store.rules_for(ports.db, raw.tenant_id, raw.payload.endpoint_id)
    await _fail_started(raw.id, [rule.id for rule in rules], reason, ports)


@group.gives_up(job_events.JOB_SUCCEEDED)
async def job_succeeded_given_up(
    raw: Envelope[job_events.JobSucceeded], reason: str, ports: Ports
) -> None:
    run = await store.get_rule_run(ports.db, raw.payload.job_id)
    if run is not None:
        await _fail_started(raw.id, [run.rule_id], reason, ports)


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
