"""What the ingress holds open for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from infra.db.engine import Database
from infra.files import FileStore
from infra.kafka.publisher import Publisher
from infra.redis import JobStreams
from infra.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    streams: JobStreams
    publisher: Publisher
    files: FileStore


def services(request: Request) -> Services:
    return request.app.state.services
