"""The `ayush` command: `dev` brings the platform up and down; keys, migrate, topics."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import NAMESPACES
from tests.harness import ROOT, eventually, sse_events, unique


def ayush(services: ServiceAddresses, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ayush.cli", *args],
        cwd=ROOT,
        env={**os.environ, **services.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_the_key_last_and_it_works(
    services: ServiceAddresses, running: object
) -> None:
    tenant = unique("cli-")
    result = ayush(services, "keys", "create", "--tenant", tenant, "--admin")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"created tenant {tenant}"
    key = lines[-1]
    assert key.startswith("ayk_")
    url = running.url  # type: ignore[attr-defined]
    response = httpx.get(f"{url}/v1/jobs/{'0' * 8}-0000-7000-8000-{'0' * 12}",
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 404  # authenticated, and no such job

    again = ayush(services, "keys", "create", "--tenant", tenant)
    assert again.returncode == 0 and "created tenant" not in again.stdout
    assert again.stdout.strip().splitlines()[-1] != key


def test_commands_without_services_fail_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")}  # fmt: skip
    env["AYUSH_DATA_DIR"] = str(tmp_path / "no-dev-stack")  # nor a stopped dev stack's data
    result = subprocess.run(
        [sys.executable, "-m", "ayush.cli", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "ayush.cli", "worker", "nope"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "unknown group" in unknown.stderr


def start_dev(
    services: ServiceAddresses,
    port: int,
    data_dir: Path,
    log: Path,
    extra_env: dict[str, str] | None = None,
    prefix: str | None = None,
    own: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """`ayush dev` on the session's services, in a topic namespace of its own; the
    variables named in `own` are left out, so it starts those services itself."""
    prefix = prefix or unique("dev") + "."
    NAMESPACES.add(prefix)  # its topics are dropped with the session's
    env = {**os.environ, **services.as_env(), "AYUSH_TOPIC_PREFIX": prefix, **(extra_env or {})}
    env = {k: v for k, v in env.items() if k not in own}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ayush.cli", "dev", "--port", str(port),
             "--data-dir", str(data_dir)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.timeout(300)
async def test_dev_runs_a_job_end_to_end_and_stops_on_ctrl_c(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    data = tmp_path / ".ayush"  # a project folder's default data folder
    dev = start_dev(services, port, data, log)
    try:

        async def banner() -> str | None:
            text = log.read_text()
            assert dev.poll() is None, text
            return text if "Press Ctrl-C to stop." in text else None

        text = await eventually(banner, 90, "ayush dev to be ready")
        url = f"http://127.0.0.1:{port}"
        assert f"ingress    {url}" in text
        key = next(line.split()[2] for line in text.splitlines() if "API key" in line)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            body = {"kind": "chat", "model": "local-echo",
                    "messages": [{"role": "user", "content": "hello dev"}]}  # fmt: skip
            job_id = (await client.post("/v1/jobs", json=body)).json()["id"]
            events = sse_events((await client.get(f"/v1/jobs/{job_id}/events")).text)
            assert events[-2]["data"]["text"] == "hello dev"
            assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"
        assert (data / "dev-api-key").read_text().strip() == key
        # A second terminal in the project folder, nothing exported: the command finds
        # the running stack's services by itself.
        created = newcomer_cli(tmp_path, "keys", "create", "--tenant", unique("acme-"))
        assert created.returncode == 0, created.stderr
        new_key = created.stdout.strip().splitlines()[-1]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            listed = await client.get("/v1/models", headers={"Authorization": f"Bearer {new_key}"})
            assert listed.status_code == 200, listed.text
        assert "export KAFKA_BOOTSTRAP_SERVERS=" in text  # for tools other than `ayush`
    finally:
        started = time.monotonic()
        dev.send_signal(signal.SIGINT)
        code = dev.wait(30)
        stopped_in = time.monotonic() - started
    assert code == 0, log.read_text()
    assert stopped_in < 20  # a few seconds when the machine is not saturated
    assert "stopped" in log.read_text()
    # Stopped: no stale addresses are used.
    assert not (data / "services.json").exists()
    after = newcomer_cli(tmp_path, "keys", "create", "--tenant", unique("acme-"))
    assert after.returncode == 2 and "must be set" in after.stderr


async def wait_ready(dev: subprocess.Popen[bytes], log: Path) -> str:
    async def banner() -> str | None:
        text = await asyncio.to_thread(log.read_text)
        assert dev.poll() is None, text
        return text if "Press Ctrl-C to stop." in text else None

    return await eventually(banner, 240, "ayush dev to be ready")


def stop(dev: subprocess.Popen[bytes]) -> int:
    dev.send_signal(signal.SIGINT)
    return dev.wait(60)


@pytest.fixture
def project_folder() -> Iterator[Path]:
    """A folder Postgres can use: run as root, pgserver runs it as an unprivileged user,
    which cannot enter pytest's private temporary folders."""
    folder = Path(tempfile.mkdtemp(prefix="ayush-project-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(600)
async def test_a_stopped_dev_stack_serves_commands_from_its_data(
    services: ServiceAddresses, project_folder: Path
) -> None:
    tmp_path = project_folder
    # `ayush dev` keeps its own database in the data folder (Kafka, Redis and S3 are the
    # session's, which a stopped dev stack would start the same way, only slower).
    port, data, prefix = free_port(), tmp_path / ".ayush", unique("dev") + "."
    first = start_dev(services, port, data, tmp_path / "first.log", prefix=prefix,
                      own=("DATABASE_URL",))  # fmt: skip
    try:
        await wait_ready(first, tmp_path / "first.log")
    finally:
        assert stop(first) == 0, (tmp_path / "first.log").read_text()
    assert (data / "postgres").is_dir() and not (data / "services.json").exists()

    # Stopped, nothing exported: the command starts the database from the data folder.
    created = newcomer_cli(tmp_path, "keys", "create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    assert "starting the stopped dev stack's services from .ayush (postgres)" in created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ayk_")

    second = start_dev(services, port, data, tmp_path / "second.log", prefix=prefix,
                       own=("DATABASE_URL",))  # fmt: skip
    try:
        await wait_ready(second, tmp_path / "second.log")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            listed = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200, listed.text
    finally:
        assert stop(second) == 0, (tmp_path / "second.log").read_text()


def newcomer_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An `ayush` command run in `folder` with no service address in its environment."""
    names = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL")
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("AYUSH_")}
    return subprocess.run(
        [sys.executable, "-m", "ayush.cli", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
