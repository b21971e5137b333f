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
"""

from __future__ import annotations

from collections.abc import Mapping

from consumers.webhook_router.admission import Limits
from consumers.webhook_router.routing import (
    GROUP,
    Ports,
    handle_job_succeeded,
    handle_webhook,
)
from infra.kafka.consumer import Handler
from schemas import integrations as integration_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import RawEnvelope

TOPICS = [topics.WEBHOOK_RECEIVED.name, topics.AI_JOB_LIFECYCLE.name]

__all__ = ["GROUP", "TOPICS", "Limits", "Ports", "handlers"]


def handlers(ports: Ports) -> Mapping[str, Handler]:
    async def on_webhook_received(raw: RawEnvelope) -> None:
        await handle_webhook(raw, ports)

    async def on_job_succeeded(raw: RawEnvelope) -> None:
        await handle_job_succeeded(raw, ports)

    return {
        integration_events.WEBHOOK_RECEIVED: on_webhook_received,
        job_events.JOB_SUCCEEDED: on_job_succeeded,
    }
