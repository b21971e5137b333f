"""The audit trail of a job's retries: one `ai.job.retrying` event per retry or fallback.

Used by the model-calls group and the batch lane, which both run jobs on the
gateway and hear of its retries through its `on_retry` callback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from infra.errors import TransientError
from infra.kafka.publisher import Publisher
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from schemas.versions import follow_up

log = logging.getLogger(__name__)


async def announce_retry(
    publisher: Publisher,
    cause: Envelope[Any],
    job_id: uuid.UUID,
    info: Mapping[str, Any],
    actor: Actor,
) -> None:
    """Publishes the retry the gateway reports in `info` (provider, attempt, error).

    A lost retry event must not fail the job: a publish that fails is logged.
    Every retry is its own event, so its id is not derived from the cause alone.
    """
    payload = job_events.JobRetrying(
        job_id=job_id,
        provider=str(info.get("provider", "")),
        attempt=max(2, int(info.get("attempt", 2))),
        error=str(info.get("error", ""))[:2000],
    )
    try:
        await publisher.publish(
            topics.AI_JOB_LIFECYCLE.name,
            follow_up(cause, job_events.JOB_RETRYING, payload, f"retrying:{uuid7()}", actor),
        )
    except TransientError as exc:
        log.warning("job %s: retry event not published: %s", job_id, exc)
