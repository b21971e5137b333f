"""What every group that runs jobs is given, whatever else it needs."""

from __future__ import annotations

from dataclasses import dataclass

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.live_streams import JobStreams
from infra.settings import Settings


@dataclass(frozen=True)
class JobPorts:
    settings: Settings
    db: Database
    streams: JobStreams  # what clients following a job read
    publisher: Publisher
