"""Session fixtures: real Kafka, Postgres and Redis, started once; the platform's processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ayush.dev import prepare
from infra.db.engine import Database
from infra.db.tenants import create_api_key, ensure_tenant
from infra.kafka.admin import create_topics
from infra.local_stack import LocalStack, ServiceAddresses
from infra.settings import Settings
from infra.vault import Vault
from tests.fakes.llm import FakeLLMServer
from tests.fakes.pinecone import FakePinecone
from tests.harness import Platform, unique
from tests.kafka_tools import drop_namespaces

pytest_plugins = ["tests.watchdog"]

T = TypeVar("T")


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceAddresses]:
    """Addresses from the environment, else a local stack for this session."""
    stack = LocalStack.start(Settings(), tmp_path_factory.mktemp("services"))
    try:
        prepare(stack.addresses.apply(Settings()))
        yield stack.addresses
    finally:
        # A broker that outlives the session would keep every namespace's topics
        # (and their open files) for good: drop the ones this session made.
        if stack.addresses.kafka_flavour == "external" and NAMESPACES:
            run_blocking(drop_namespaces(stack.addresses.kafka_bootstrap_servers, NAMESPACES))
        stack.stop()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


# Every test namespace gets its own topics; a few partitions each keep the
# broker well below its open-file limit over a whole session.
MAX_PARTITIONS = 3
# The topic prefixes this session used.
NAMESPACES: set[str] = set()
# The fake vendors' models are priced by the tests, not by the shipped table.
TEST_PRICES = Path(__file__).with_name("fakes") / "prices.toml"
# One key ring for the session, in the tests' settings and their platforms' processes
# alike: users' events sealed by a worker open in the test (and the other way round).
TEST_ENCRYPTION_KEYS = Vault.new_key_setting(unique("test"))


# The default embedder (MiniLM on the CPU) costs the shared cores tens of milliseconds
# a text; the suite's memories are embedded by hashing unless a test asks for the
# default (tests/test_embedders.py, tests/test_memory_reembed.py do).
TEST_EMBEDDER = "hashing"


def namespace_settings(services: ServiceAddresses, prefix: str) -> Settings:
    NAMESPACES.add(prefix)
    return services.apply(
        Settings(
            topic_prefix=prefix,
            kafka_max_partitions=MAX_PARTITIONS,
            prices_file=TEST_PRICES,
            memory_embedder=TEST_EMBEDDER,
            encryption_keys=TEST_ENCRYPTION_KEYS,
        )
    )


def platform_env(
    services: ServiceAddresses, fake_llm: FakeLLMServer, prefix: str
) -> dict[str, str]:
    return {
        **services.as_env(),
        "AYUSH_TOPIC_PREFIX": prefix,
        "AYUSH_KAFKA_MAX_PARTITIONS": str(MAX_PARTITIONS),
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "OPENAI_API_KEY": "sk-fake",
        "ANTHROPIC_BASE_URL": fake_llm.url,
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "AYUSH_PROVIDER_BACKOFF_INITIAL_S": "0.05",
        "AYUSH_PROVIDER_BACKOFF_MAX_S": "2",
        "AYUSH_LOCAL_ECHO_DELAY_S": "0.005",
        "AYUSH_LOG_LEVEL": "INFO",
        "AYUSH_PRICES_FILE": str(TEST_PRICES),
        "AYUSH_MEMORY_EMBEDDER": TEST_EMBEDDER,
        # Sealed secrets (a sign-in issuer's HS256 secret, users' data keys) need a key.
        "AYUSH_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
    }


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def new_platform(
    services: ServiceAddresses, fake_llm: FakeLLMServer, logs: Path, prefix: str | None = None
) -> tuple[Platform, Settings]:
    prefix = prefix or unique("ns") + "."
    settings = namespace_settings(services, prefix)
    run_blocking(create_topics(settings))
    return Platform(platform_env(services, fake_llm, prefix), logs), settings


@contextmanager
def ingress_alone(
    services: ServiceAddresses, fake_llm: FakeLLMServer, logs: Path, env: dict[str, str]
) -> Iterator[Platform]:
    """An ingress of a namespace of its own, `env` on top of the usual, and no worker:
    what a client sees is what the ingress did."""
    platform, _ = new_platform(services, fake_llm, logs)
    try:
        platform.start_ingress_with(env)
        yield platform
    finally:
        platform.stop()


@dataclass
class Running:
    platform: Platform
    settings: Settings

    @property
    def url(self) -> str:
        return self.platform.url


@pytest.fixture(scope="session")
def running(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One ingress and one model-calls worker shared by the session."""
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("logs"))
    with platform.serving("model-calls"):
        yield Running(platform, settings)


@pytest.fixture(scope="session")
async def db(services: ServiceAddresses) -> AsyncIterator[Database]:
    database = Database(services.database_url, pool_size=5)
    yield database
    await database.close()


@dataclass(frozen=True)
class TenantKey:
    tenant_id: object
    key: str
    headers: dict[str, str]


async def make_tenant(db: Database, admin: bool = False) -> TenantKey:
    tenant, _ = await ensure_tenant(db, unique("tenant-"))
    _, plaintext = await create_api_key(db, tenant.id, role="admin" if admin else "developer")
    return TenantKey(tenant.id, plaintext, {"Authorization": f"Bearer {plaintext}"})


@pytest.fixture
async def tenant(db: Database) -> TenantKey:
    return await make_tenant(db)


@pytest.fixture
async def client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        yield http


def pytest_report_header() -> str:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "local (started by the session)"
    return f"ayush services: kafka={kafka}"


@pytest.fixture(scope="session")
def fake_pinecone() -> Iterator[FakePinecone]:
    with FakePinecone(dimension=384) as server:
        yield server


@pytest.fixture(scope="session")
def memory_worker(running: Running) -> Iterator[Running]:
    """The memory group, next to the shared ingress and model-calls worker."""
    proc = running.platform.start_worker("memory")
    yield running
    proc.terminate(15)
