"""What the ingress holds open for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from infra.db.engine import Database
from infra.kafka.publisher import Publisher
from infra.redis import JobStreams
from infra.settings import Settings
from infra.vault import Vault


@dataclass
class Services:
    settings: Settings
    db: Database
    streams: JobStreams
    publisher: Publisher


def services(request: Request) -> Services:
    return request.app.state.services


def vault(request: Request) -> Vault:
    """Seals and opens secrets at rest; its keys never leave the process."""
    return request.app.state.vault
