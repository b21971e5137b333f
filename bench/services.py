"""The services a bench runs against: those the environment names, else its own.

Every bench starts here, so each one runs the same way with or without
KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL and S3_ENDPOINT_URL set: what
is set is used as it is, what is not is started on loopback for the run and
stopped after it (`infra.local_stack`, as `ayush dev` and the tests do).

    with bench_services() as services:
        settings = services.settings  # its own topic prefix, migrated, topics made
        platform = Platform(services.env(AYUSH_LOG_LEVEL="WARNING"), services.work / "logs")

The scratch folder is removed after a run that went well and kept (its path
printed) after one that failed, for the processes' logs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ayush.dev import prepare
from ayush.keys import create_key
from infra.local_stack import LocalStack, ServiceAddresses
from infra.local_stack.process import free_port
from infra.settings import Settings
from schemas.keys import KeyRole, NewKey

ROOT = Path(__file__).resolve().parents[1]

# A bench drives the platform with one key, faster than any per-minute limit allows
# (a chat job counts its max_tokens, 1,024 by default, against the tokens a minute):
# the limits are still counted on every request, they just never refuse one.
UNLIMITED = {
    "AYUSH_RATE_LIMIT_REQUESTS_PER_MIN": "100000000",
    "AYUSH_RATE_LIMIT_TOKENS_PER_MIN": "100000000000",
}


@dataclass(frozen=True)
class BenchServices:
    addresses: ServiceAddresses
    settings: Settings  # the addresses, the bench's own topic prefix and its overrides
    work: Path  # scratch folder of the run

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a platform process: the addresses, the topic prefix, no
        per-minute limits, then `extra`."""
        return {
            **self.addresses.as_env(),
            "AYUSH_TOPIC_PREFIX": self.settings.topic_prefix,
            **UNLIMITED,
            **extra,
        }


@contextmanager
def bench_services(*, prepared: bool = True, **overrides: Any) -> Iterator[BenchServices]:
    """Services for one bench run, with settings of a fresh topic prefix.

    `prepared`: migrations run and topics made (`ayush.dev.prepare`). `overrides`:
    settings fields the bench sets (they win over the environment).
    """
    work = Path(tempfile.mkdtemp(prefix="ayush-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    base = Settings(**{"topic_prefix": prefix, **overrides})
    stack = LocalStack.start(base, work / "services")
    failed = True
    try:
        settings = stack.addresses.apply(base)
        if prepared:
            prepare(settings)
        yield BenchServices(stack.addresses, settings, work)
        failed = False
    finally:
        stack.stop()
        if failed:
            print(f"bench: logs and data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Upstream:
    """The instant fake upstream of a run, and the routing file that sends a model to it."""

    port: int
    pid: int
    routing: Path  # AYUSH_ROUTING_FILE

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def instant_upstream(services: BenchServices, model: str, **row: str) -> Iterator[Upstream]:
    """An OpenAI-compatible upstream that answers at once (tests/fakes/instant_upstream.py),
    in a process of its own so it shares no interpreter with the load, and a routing file
    that sends `model` to it at a price of 1/2 USD per million tokens (`row`: more keys of
    the model's table, e.g. context_window="200000")."""
    port = free_port()
    command = [sys.executable, "-m", "tests.fakes.instant_upstream", str(port)]
    quiet = subprocess.DEVNULL
    upstream = subprocess.Popen(command, cwd=ROOT, stdout=quiet, stderr=quiet)
    routing = services.work / "routing.toml"
    extra = "".join(f"{key} = {value}\n" for key, value in row.items())
    routing.write_text(
        f'[models."{model}"]\nprice = {{ input = "1", output = "2" }}\n{extra}'
        f'deployments = [{{ provider = "openai", model = "bench", '
        f'base_url = "http://127.0.0.1:{port}/v1", api_key = "sk-bench" }}]\n'
    )
    try:
        yield Upstream(port, upstream.pid, routing)
    finally:
        upstream.terminate()
        upstream.wait(10)


async def bench_key(settings: Settings, role: KeyRole = "developer") -> str:
    """The secret of a new key of a new tenant, as `ayush keys create` makes it."""
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    _, _, secret = await create_key(settings, tenant, NewKey(name="bench", role=role))
    return secret
