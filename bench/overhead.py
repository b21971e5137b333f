"""Jobs per second with tracing and metrics on vs off, measured in the same run.

Each round starts two copies of the platform side by side, each an ingress
and a model-calls worker (real processes) in its own topic prefix: "on"
exports every span over OTLP (to a stand-in collector in this process) and
keeps Prometheus series, its worker serving /metrics; "off" does neither.
Both get the same number of local-echo jobs at the same time, through
HTTP -> Kafka -> worker -> Postgres/Redis, so both see the same load on a
shared machine; each is timed from its first request to its last stored
result. CPU time of the processes per job (after warm-up) is reported too.

    uv run python bench/overhead.py [--jobs 200] [--rounds 2] [--concurrency 16]

Prints one JSON object with jobs_per_s_on and jobs_per_s_off. Uses
KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL when set, else starts a
local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services import BenchServices, bench_key, bench_services
from infra.db.engine import Database
from infra.kafka.admin import create_topics
from infra.local_stack.process import free_port
from tests.harness import Platform

BODY = {"kind": "chat", "model": "local-echo", "messages": [{"role": "user", "content": "x y z"}]}


@dataclass
class Side:
    platform: Platform
    headers: dict[str, str]


def cpu_seconds(platform: Platform) -> float:
    """User + system CPU time of the platform's live processes (Linux)."""
    total = 0.0
    for proc in platform.procs:
        fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def start_side(services: BenchServices, env: dict[str, str], telemetry: bool) -> Side:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    await create_topics(services.settings.model_copy(update={"topic_prefix": prefix}))
    mode = {
        "AYUSH_TELEMETRY_ENABLED": "true" if telemetry else "false",
        "AYUSH_TOPIC_PREFIX": prefix,
    }
    platform = Platform(services.env(**env, **mode), services.work / "logs" / prefix)
    await asyncio.to_thread(platform.start_ingress)
    metrics = {"AYUSH_METRICS_PORT": str(free_port())} if telemetry else {}
    await asyncio.to_thread(platform.start_worker, "model-calls", metrics)
    return Side(platform, {"Authorization": f"Bearer {await bench_key(services.settings)}"})


async def drive(side: Side, db: Database, jobs: int, concurrency: int) -> tuple[float, float]:
    """Jobs per second, and CPU ms per job of the side's processes."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=side.platform.url, limits=limits, timeout=60) as http:
        for _ in range(5):  # warm-up: connections and the consumer's first fetch
            (await http.post("/v1/jobs", json=BODY, headers=side.headers)).raise_for_status()
        remaining = iter(range(jobs))
        ids: list[uuid.UUID] = []

        async def submitter() -> None:
            for _ in remaining:
                response = await http.post("/v1/jobs", json=BODY, headers=side.headers)
                response.raise_for_status()
                ids.append(uuid.UUID(response.json()["id"]))

        cpu_before = cpu_seconds(side.platform)
        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        query = text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'succeeded'")
        while True:
            async with db.session() as session:
                done = (await session.execute(query, {"ids": ids})).scalar_one()
            if done >= jobs:
                break
            if time.perf_counter() - started > 300:
                raise TimeoutError(f"{done} of {jobs} jobs finished in 300 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu_ms = (cpu_seconds(side.platform) - cpu_before) * 1000 / jobs
        return jobs / elapsed, cpu_ms


async def run_round(
    services: BenchServices, env: dict[str, str], jobs: int, concurrency: int
) -> dict[str, tuple[float, float]]:
    assert services.settings.database_url is not None
    db = Database(services.settings.database_url, pool_size=4)
    sides: dict[str, Side] = {}
    try:
        for mode in ("off", "on"):
            sides[mode] = await start_side(services, env, mode == "on")
        results = await asyncio.gather(*(drive(s, db, jobs, concurrency) for s in sides.values()))
        return dict(zip(sides, results, strict=True))
    finally:
        for side in sides.values():
            side.platform.stop()
        await db.close()


class _Collector(BaseHTTPRequestHandler):
    """Stands in for an OpenTelemetry collector: takes OTLP/HTTP exports, answers 200."""

    received = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {
        "AYUSH_LOCAL_ECHO_DELAY_S": "0.002", "AYUSH_LOG_LEVEL": "INFO",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
    }  # fmt: skip
    try:
        with bench_services() as services:
            for _ in range(args.rounds):
                one = run_round(services, env, args.jobs, args.concurrency)
                for mode, (rate, cpu_ms) in asyncio.run(one).items():
                    rates[mode].append(round(rate, 1))
                    cpu[mode].append(round(cpu_ms, 2))
    finally:
        collector.shutdown()
    on, off = statistics.mean(rates["on"]), statistics.mean(rates["off"])
    print(json.dumps({
        "jobs_per_s_on": round(on, 1), "jobs_per_s_off": round(off, 1),
        "ratio": round(on / off, 3), "target_ratio": 0.9, "rounds": rates,
        "cpu_ms_per_job_on": round(statistics.mean(cpu["on"]), 2),
        "cpu_ms_per_job_off": round(statistics.mean(cpu["off"]), 2),
        "otlp_bytes_exported": _Collector.received,
        "jobs_per_round": args.jobs, "concurrency": args.concurrency,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
