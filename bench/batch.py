"""A 10,000-line batch against an instant fake upstream, and what it does to interactive jobs.

Prints JSON: `lines_per_s` (batch created -> completed), and the p99 of
interactive chat jobs (POST /v1/jobs until the SSE stream says `done`,
sequential, model local-echo) measured idle, then all the while the batch runs:
`interactive_p99_ms_idle`, `interactive_p99_ms_batch`. Target: batch <= 2x idle.
Also the CPU seconds each process spent on the batch, to see where a line's
cost goes. The upstream (tests/fakes/instant_upstream.py) is its own process.

    uv run python bench/batch.py [--lines 10000] [--jobs 200]

Uses the services in KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL when
set, else starts a local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e import job_round_trips
from bench.services import bench_key, bench_services, instant_upstream
from bench.stats import percentile
from infra.settings import Settings
from tests.harness import Platform

GROUPS = ("model-calls", "model-calls-batch", "batch")


def batch_file(lines: int) -> bytes:
    rows = (
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-bench", "messages": [{"role": "user", "content": f"line {i}"}]}}
        for i in range(lines)
    )  # fmt: skip
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


async def run_batch(url: str, key: str, lines: int, done: asyncio.Event) -> tuple[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", batch_file(lines), filename="bench.jsonl")
        async with http.post(f"{url}/v1/files", data=form) as response:
            file_id = (await response.json())["id"]
        started = time.perf_counter()
        body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                "completion_window": "24h"}  # fmt: skip
        async with http.post(f"{url}/v1/batches", json=body) as response:
            batch: dict[str, Any] = await response.json()
        while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
            await asyncio.sleep(0.5)
            async with http.get(f"{url}/v1/batches/{batch['id']}") as response:
                batch = await response.json()
        done.set()
        return batch["status"], time.perf_counter() - started


async def while_running(url: str, key: str, done: asyncio.Event) -> list[float]:
    """Interactive round trips, one after another, for as long as the batch runs."""
    latencies: list[float] = []
    while not done.is_set():
        latencies += await job_round_trips(url, key, 10)
    return latencies


def cpu_seconds(platform: Platform) -> dict[str, float]:
    """User + system CPU of each process so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for proc in platform.procs:
        fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        times[proc.name] = (int(fields[11]) + int(fields[12])) / tick
    return times


async def measure(platform: Platform, key: str, lines: int, jobs: int) -> dict[str, Any]:
    url = platform.url
    await job_round_trips(url, key, 10)  # warm up
    idle = await job_round_trips(url, key, jobs)
    before = cpu_seconds(platform)
    done = asyncio.Event()
    runner = asyncio.create_task(run_batch(url, key, lines, done))
    await asyncio.sleep(1)  # the batch is being created and validated
    busy = await while_running(url, key, done)
    status, seconds = await runner
    after = cpu_seconds(platform)
    return {
        "lines": lines,
        "batch_status": status,
        "lines_per_s": round(lines / seconds, 1),
        "interactive_jobs_idle": len(idle),
        "interactive_jobs_batch": len(busy),
        "interactive_p99_ms_idle": round(percentile(idle, 0.99), 2),
        "interactive_p99_ms_batch": round(percentile(busy, 0.99), 2),
        "cpu_ms_per_line": {n: round((after[n] - before[n]) * 1000 / lines, 2) for n in after},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=200, help="interactive jobs measured idle")
    args = parser.parse_args()
    with bench_services() as services, instant_upstream(services, "gpt-bench") as upstream:
        env = services.env(
            AYUSH_LOCAL_ECHO_DELAY_S="0", AYUSH_LOG_LEVEL="WARNING",
            AYUSH_DATA_DIR=str(services.work), AYUSH_ROUTING_FILE=str(upstream.routing),
        )  # fmt: skip
        os.environ.update(env)
        platform = Platform(env, services.work / "logs")
        try:
            key = asyncio.run(bench_key(services.settings, "admin"))
            platform.start_ingress()
            for group in GROUPS:
                platform.start_worker(group)
            print("measuring …", file=sys.stderr)
            result = asyncio.run(measure(platform, key, args.lines, args.jobs))
            result["batch_lane_concurrency"] = Settings().batch_lane_concurrency
            print(json.dumps(result, indent=2))
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
