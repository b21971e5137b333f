"""`ayush dev` as a newcomer runs it: it outlives a killed worker and stops promptly on Ctrl-C.

With the services' addresses in the environment, `ayush dev` starts no services
of its own: it migrates, creates its (namespaced) topics and runs the ingress
and one process per group against them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import TenantKey
from tests.harness import eventually
from tests.test_cli import start_dev
from tests.test_jobs_http import chat, submit, wait_finished

pytestmark = pytest.mark.timeout(900)  # a dozen processes start: slow on a busy machine

DELAY_S = 0.2  # local-echo answers a word every DELAY_S: the calls are slow enough to be cut


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _descendants(root: int) -> set[int]:
    parents = {
        int(p.name): _parent(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()
    }
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


async def _status(client: httpx.AsyncClient, tenant: TenantKey, job_id: str) -> str:
    return str((await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()["status"])


async def test_dev_restarts_a_killed_worker_and_stops_within_10s_of_ctrl_c(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    port = free_port()
    console = tmp_path / "console.log"
    dev = start_dev(services, port, tmp_path / "data", console, {
        "AYUSH_KAFKA_MAX_PARTITIONS": "3", "AYUSH_LOCAL_ECHO_DELAY_S": str(DELAY_S),
    })  # fmt: skip

    def said(text: str) -> bool:
        return text in console.read_text(errors="replace")

    seen: set[int] = set()  # every process of the stack, to clean up after a failure
    try:

        async def ready() -> bool:
            assert dev.poll() is None, console.read_text(errors="replace")
            return said("Ayush is ready")

        await eventually(ready, 600, "ayush dev to be ready")
        seen |= _descendants(dev.pid)
        key = (tmp_path / "data" / "dev-api-key").read_text().strip()
        tenant = TenantKey(None, key, {"Authorization": f"Bearer {key}"})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            words = "one two three four five six seven eight"
            before = [await submit(client, tenant, chat(f"{words} {n}")) for n in range(4)]

            async def one_running() -> bool:
                return any([await _status(client, tenant, j) == "running" for j in before])

            await eventually(one_running, 60, "a job of the model-calls worker to run")
            worker = next(
                pid for pid in _descendants(dev.pid)
                if _cmdline(pid)[-2:] == ["worker", "model-calls"]
            )  # fmt: skip
            os.kill(worker, signal.SIGKILL)
            after = [await submit(client, tenant, chat(f"after {n}")) for n in range(4)]

            async def restarted() -> bool:
                return said("model-calls killed by SIGKILL; restarting in")

            await eventually(restarted, 30, "ayush dev to say it restarts the worker")
            seen |= _descendants(dev.pid)
            assert said(str(tmp_path / "data" / "logs" / "model-calls.log"))
            for job_id in before + after:
                job = await wait_finished(client, tenant, job_id, timeout_s=240)
                assert job["status"] == "succeeded", job
                assert job["result"].startswith(("after", "one"))
            assert dev.poll() is None  # the stack kept running

            # Ctrl-C while calls are in flight: every process is gone within 10 s.
            slow = [await submit(client, tenant, chat("word " * 200)) for _ in range(4)]

            async def slow_running() -> bool:
                return any([await _status(client, tenant, j) == "running" for j in slow])

            await eventually(slow_running, 60, "a slow job to run")
        processes = _descendants(dev.pid) | {dev.pid}
        seen |= processes
        assert len(processes) > 8  # the ingress and the workers, at least
        dev.send_signal(signal.SIGINT)
        stopped_at = time.monotonic()

        async def all_gone() -> bool:
            dev.poll()  # reap it
            return not any(_alive(pid) for pid in processes)

        await eventually(all_gone, 10, "every process of ayush dev to end")
        assert time.monotonic() - stopped_at < 10
        assert dev.wait(1) == 0 and said("stopped")
    finally:
        for pid in seen | _descendants(dev.pid) | {dev.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        dev.wait(10)
