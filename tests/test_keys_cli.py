"""`ayush keys create|list|revoke|rotate`, as a person at a terminal runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from infra.local_stack import ServiceAddresses
from tests.conftest import Running, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import ROOT, eventually, unique

PROBE = f"/v1/jobs/{uuid.UUID(int=0)}"


@pytest.fixture(scope="module")
def running(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """An ingress of its own (no worker: no job runs here)."""
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("keys-cli"))
    try:
        platform.start_ingress()
        yield Running(platform, settings)
    finally:
        platform.stop()


@pytest.fixture
async def client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        yield http


def ayush(
    services: ServiceAddresses, running: Running, *args: str
) -> subprocess.CompletedProcess[str]:
    # The shared ingress's namespace: its key changes reach that ingress.
    env = {**os.environ, **services.as_env(), "AYUSH_TOPIC_PREFIX": running.settings.topic_prefix}
    return subprocess.run(
        [sys.executable, "-m", "ayush.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def created_key(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    key_id = next(line.split()[1] for line in lines if line.startswith("key "))
    return key_id, lines[-1]


async def status_of(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get(PROBE, headers={"Authorization": f"Bearer {key}"})).status_code


@pytest.mark.timeout(300)  # each command starts a Python process
async def test_keys_commands_create_list_rotate_and_revoke(
    services: ServiceAddresses, running: Running, client: httpx.AsyncClient
) -> None:
    tenant = unique("cli-keys-")
    key_id, key = created_key(ayush(
        services, running, "keys", "create", "--tenant", tenant, "--role", "service",
        "--scope", "jobs:read", "--scope", "jobs:write", "--name", "worker",
        "--expires-in", "30d", "--allow-ip", "127.0.0.1",
    ))  # fmt: skip
    assert await status_of(client, key) == 404

    listed = ayush(services, running, "keys", "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    (view,) = json.loads(listed.stdout)
    assert view["id"] == key_id and view["role"] == "service" and view["name"] == "worker"
    assert view["scopes"] == ["jobs:read", "jobs:write"]
    assert view["allowed_ips"] == ["127.0.0.1/32"] and view["expires_at"] is not None
    assert key not in listed.stdout and key[12:] not in listed.stdout
    table = ayush(services, running, "keys", "list", "--tenant", tenant)
    assert table.returncode == 0 and key_id in table.stdout and key[12:] not in table.stdout

    rotated = ayush(services, running, "keys", "rotate", key_id, "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("ayk_") and new != key
    assert await status_of(client, key) == 401  # ended at once, in the running ingress too
    assert await status_of(client, new) == 404

    revoked = ayush(services, running, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr

    async def refused() -> bool:
        return await status_of(client, new) == 401

    await eventually(refused, 1, "the running ingress to refuse the revoked key")


@pytest.mark.timeout(300)
def test_keys_commands_refuse_bad_input_with_a_message(
    services: ServiceAddresses, running: Running
) -> None:
    tenant = unique("cli-bad-")
    cases = [
        (("create", "--tenant", tenant, "--role", "root"), "role"),
        (("create", "--tenant", tenant, "--role", "service", "--scope", "jobs:fly"), "scope"),
        (("create", "--tenant", tenant, "--allow-ip", "10.0.0.0/33"), "allowed_ips"),
        (("create", "--tenant", tenant, "--expires-in", "soon"), "--expires-in"),
        (("create", "--tenant", tenant, "--expires-at", "2001-01-01T00:00:00Z"), "expires_at"),
        (("list", "--tenant", tenant), "no tenant"),
        (("revoke", str(uuid.uuid4())), "no API key"),
        (("rotate", str(uuid.uuid4())), "no live API key"),
        (("rotate", str(uuid.uuid4()), "--grace", "forever"), "--grace"),
    ]
    for args, said in cases:
        result = ayush(services, running, "keys", *args)
        assert result.returncode != 0, args
        assert said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
