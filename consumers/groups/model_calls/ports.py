"""What the model-calls handlers are given: adapters and settings, nothing global."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.jobs.ports import JobPorts
from infra.channels import Channels
from infra.db.jobs import JobWrites
from infra.db.semantic_cache import SemanticCacheStore
from infra.embeddings.base import Embedder
from infra.replies import ResponseCache
from infra.routing.gateway import Gateway
from infra.vectors.recall import MemoryRecall
from schemas.envelope import Actor

GROUP = "model-calls"
SYSTEM = Actor(kind="system", id=GROUP)


@dataclass(frozen=True)
class SemanticCache:
    """Answers found by meaning: questions embedded by the memory embedder, rows in Postgres."""

    embedder: Embedder
    store: SemanticCacheStore


@dataclass(frozen=True)
class Ports(JobPorts):
    gateway: Gateway  # routes, and prices by its catalog
    cache: ResponseCache
    # Replay side mode: routes the request and stops there. No provider call,
    # no stream, no event: replaying history must not bill anyone twice.
    replay: bool = False
    recall: MemoryRecall | None = None  # jobs with `memory` get the user's memories
    # Live channels (conversations, users' feeds); None in replay, which streams nothing.
    channels: Channels | None = None
    semantic: SemanticCache | None = None  # None in replay
    writes: JobWrites = field(init=False)  # starts and completions, batched across calls

    def __post_init__(self) -> None:
        object.__setattr__(self, "writes", JobWrites(self.db, GROUP))
