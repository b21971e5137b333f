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
from infra.settings import Settings
from schemas.keys import KeyRole, NewKey

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


async def bench_key(settings: Settings, role: KeyRole = "developer") -> str:
    """The secret of a new key of a new tenant, as `ayush keys create` makes it."""
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    _, _, secret = await create_key(settings, tenant, NewKey(name="bench", role=role))
    return secret
