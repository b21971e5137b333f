"""A platform with every group of the integrations path, and fake vendors it talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from infra.vault import Vault
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.fakes.vendors import FakeVendors
from tests.harness import unique

MAX_WEBHOOK_BYTES = 64 * 1024


class SmtpInbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: SmtpEnvelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 Message accepted for delivery"


@dataclass
class Integrations(Running):
    vendors: FakeVendors
    smtp: SmtpInbox
    smtp_port: int
    # The integrations worker's /metrics, on the same port after a restart.
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start_integrations_worker(self) -> None:
        self.platform.start_worker(
            "integrations", extra_env={"AYUSH_METRICS_PORT": str(self.metrics_port)}
        )


# Package scope: its processes (and their database connections) are gone
# before the tests of other packages start their own.
@pytest.fixture(scope="package")
def integrations(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Integrations]:
    vendors = FakeVendors().start()
    inbox = SmtpInbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("integ-logs"))
    platform.env.update(
        {
            **vendors.env(),
            "AYUSH_ENCRYPTION_KEYS": Vault.new_key_setting(unique("test")),
            "AYUSH_WEBHOOK_MAX_BODY_BYTES": str(MAX_WEBHOOK_BYTES),
            "AYUSH_CONNECTOR_BACKOFF_INITIAL_S": "0.05",
            "AYUSH_CONNECTOR_BACKOFF_MAX_S": "1",
            # A short lease: a call cut off by a dead worker is settled within seconds.
            "AYUSH_CONNECTOR_TIMEOUT_S": "3",
            "AYUSH_MODEL_CALLS_CONCURRENCY": "8",
            "AYUSH_INTEGRATIONS_CONCURRENCY": "8",
            "AYUSH_CONNECTOR_MAX_ATTEMPTS": "3",
            # The fake vendors listen on loopback, which the http and email connectors refuse.
            "AYUSH_CONNECTOR_ALLOW": "127.0.0.1",
        }
    )
    try:
        with platform.serving("model-calls", "webhook-router"):
            running = Integrations(platform, settings, vendors, inbox, smtp_port, free_port())
            running.start_integrations_worker()
            yield running
    finally:
        smtp.stop()
        vendors.stop()


@pytest.fixture
async def api(integrations: Integrations) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=integrations.url, timeout=30) as http:
        yield http


@pytest.fixture
async def tenant(db: Database) -> TenantKey:
    """Connections, webhook endpoints and rules are the tenant's administration: an admin key."""
    return await make_tenant(db, admin=True)
