"""What the ingress holds open for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from infra.channels import Channels
from infra.db.engine import Database
from infra.db.jobs import QueuedJobs
from infra.files import FileStore
from infra.kafka.publisher import Publisher
from infra.live_streams import JobStreams
from infra.pricing import PriceTable
from infra.replies import Replies
from infra.routing.catalog import ModelCatalog
from infra.routing.config import RoutingConfig
from infra.settings import Settings
from infra.stream_slots import StreamSlots
from infra.vault import Vault
from infra.vectors.factory import MemoryBackend


@dataclass
class Services:
    settings: Settings
    db: Database
    streams: JobStreams
    slots: StreamSlots
    publisher: Publisher
    replies: Replies
    files: FileStore
    queued: QueuedJobs
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    prices: PriceTable = field(default_factory=lambda: PriceTable({}))
    memory: MemoryBackend | None = None
    # Which models a request may name and what they cost: the routing file over the prices.
    catalog: ModelCatalog = field(
        default_factory=lambda: ModelCatalog(RoutingConfig(), PriceTable({}))
    )
    # Live channels: conversations and users' feeds (None only where nothing reads them).
    channels: Channels | None = None

    def model_names(self) -> list[str]:
        """What GET /v1/models lists: every model a request may name."""
        return self.catalog.names()


def services(request: Request) -> Services:
    return request.app.state.services


async def services_dependency(request: Request) -> Services:
    """`services` for Depends: FastAPI runs a plain function in a thread, once per request."""
    return services(request)


Svc = Annotated[Services, Depends(services_dependency)]


async def vault(request: Request) -> Vault:
    """Seals and opens secrets at rest; its keys never leave the process."""
    return request.app.state.vault
