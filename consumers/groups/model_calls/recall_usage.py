"""A chat job's memory recall embeds its query: that call is billed like any embedding."""

from __future__ import annotations

import uuid
from typing import Any

from consumers.groups.model_calls.outcomes import follow_up
from consumers.groups.model_calls.ports import Ports
from infra.embeddings.metering import embedding_usage
from infra.vectors.recall import MemoryRecall
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id


class MeteredRecall:
    """The recall port for one job: each recall is one `usage.recorded`, under ids derived
    from the job's request, so the recall of a job tried again is counted once."""

    def __init__(
        self,
        recall: MemoryRecall,
        raw: Envelope[Any],
        request: job_events.JobRequested,
        ports: Ports,
    ) -> None:
        self._recall = recall
        self._raw = raw
        self._request = request
        self._ports = ports

    @property
    def model(self) -> str:
        return self._recall.model

    async def recall(self, tenant_id: uuid.UUID, user_id: str, query: str, top_k: int) -> list[str]:
        found = await self._recall.recall(tenant_id, user_id, query, top_k)
        ports = self._ports
        # Its own id, not the job's: the job's usage settles the job's reservation.
        usage = embedding_usage(
            derived_id(self._request.job_id, "recall"),
            [query],
            purpose="recall",
            provider=ports.settings.memory_embedder,
            model=self._recall.model,
            prices=ports.gateway.catalog.prices,
            api_key_id=self._request.api_key_id,
            user_id=user_id,
        )
        event = follow_up(self._raw, job_events.USAGE_RECORDED, usage, "recall-usage")
        await ports.publisher.publish(topics.USAGE_RECORDED.name, event)
        return found
