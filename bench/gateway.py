"""Benchmark of the OpenAI-compatible gateway: the overhead it adds, measured.

Starts an instant fake upstream (tests/fakes/instant_upstream.py), an ingress and one
model-calls worker, then drives POST /v1/chat/completions with an aiohttp
load client at concurrency 1 and 32, through Ayush (HTTP -> Kafka -> worker
-> upstream -> Redis -> HTTP) and straight to the upstream, in the same run.
Prints one JSON object, with the raw Kafka round trip (produce -> consume, no
processing) measured in the same run as the floor of what a trip through
Kafka can cost, and the CPU time the ingress and the worker spent per request
under load (a figure that holds even when other work shares the machine). It
also splits the whole machine's CPU per request at concurrency 32 by component
(ingress, worker, Kafka, Postgres, Redis, load client, upstream, idle): on a
small machine their sum is what bounds requests/s.

    uv run python bench/gateway.py [--seconds 8] [--c1-requests 300] [--warmup-seconds 60]

Uses the services in KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL when
set, else starts a local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e import kafka_round_trips
from bench.machine_cpu import per_request_ms, snapshot
from bench.services import BenchServices, Upstream, bench_key, bench_services, instant_upstream
from bench.stats import percentile
from tests.harness import Platform

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi there"}]}


async def _one(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> float:
    started = time.perf_counter()
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
    return (time.perf_counter() - started) * 1000


async def sequential(url: str, headers: dict[str, str], n: int, stream: bool) -> list[float]:
    body = json.dumps({**BODY, "stream": stream}).encode()
    async with aiohttp.ClientSession() as http:
        for _ in range(min(20, n)):  # warm-up: connections, caches, JIT-free paths
            await _one(http, url, body, headers)
        return [await _one(http, url, body, headers) for _ in range(n)]


async def concurrent(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, stream: bool
) -> dict[str, float]:
    body = json.dumps({**BODY, "stream": stream}).encode()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*[_one(http, url, body, headers) for _ in range(concurrency)])
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                try:
                    latencies.append(await _one(http, url, body, headers))
                except (RuntimeError, aiohttp.ClientError):
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "errors": errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_services() as services:
        return measure(args, services)


def measure(args: argparse.Namespace, services: BenchServices) -> dict[str, Any]:
    with instant_upstream(services, "bench-model") as upstream:
        return _measure(args, services, upstream)


def _measure(
    args: argparse.Namespace, services: BenchServices, upstream: Upstream
) -> dict[str, Any]:
    settings = services.settings
    env = services.env(
        AYUSH_ROUTING_FILE=str(upstream.routing),
        AYUSH_LOG_LEVEL="INFO",  # the worker says it is ready at INFO
    )
    platform = Platform(env, services.work / "logs")
    try:
        platform.start_ingress()
        platform.start_worker("model-calls")
        key = asyncio.run(bench_key(settings))
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        plain = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
        ayush_url = f"{platform.url}/v1/chat/completions"
        direct_url = f"{upstream.url}/chat/completions"

        # Steady state, as a service that has been up a while: the broker's JIT
        # compiles its request path over the first several thousand requests (a
        # fresh broker spends three times the CPU per request), and the caches
        # and pools of every process fill. Both paths: batched (32) and lone (1).
        asyncio.run(concurrent(ayush_url, auth, 32, args.warmup_seconds, False))
        asyncio.run(concurrent(ayush_url, auth, 1, args.warmup_seconds / 3, False))
        direct_c32 = asyncio.run(concurrent(direct_url, plain, 32, args.seconds, False))
        direct_c32_stream = asyncio.run(concurrent(direct_url, plain, 32, args.seconds, True))
        roles = {p.popen.pid: p.name for p in platform.procs}
        roles |= {upstream.pid: "upstream", os.getpid(): "load_client"}
        machine_before = snapshot(roles)
        ayush_c32 = asyncio.run(concurrent(ayush_url, auth, 32, args.seconds, False))
        requests = ayush_c32["rps"] * args.seconds
        machine = per_request_ms(machine_before, snapshot(roles), requests)
        ayush_c32_stream = asyncio.run(concurrent(ayush_url, auth, 32, args.seconds, True))
        # Lone requests last: their path warms up slowest (the broker's long-poll wake-ups).
        direct_c1 = asyncio.run(sequential(direct_url, plain, args.c1_requests, False))
        ayush_c1 = asyncio.run(sequential(ayush_url, auth, args.c1_requests, False))
        ayush_c1_stream = asyncio.run(sequential(ayush_url, auth, args.c1_requests, True))
        kafka = asyncio.run(kafka_round_trips(settings, args.c1_requests))
    finally:
        platform.stop()
    d50, d99 = percentile(direct_c1, 0.5), percentile(direct_c1, 0.99)
    a50, a99 = percentile(ayush_c1, 0.5), percentile(ayush_c1, 0.99)
    return {
        "added_p50_ms_c1": round(a50 - d50, 2),
        "added_p99_ms_c1": round(a99 - d99, 2),
        "added_p50_ms_c1_stream": round(percentile(ayush_c1_stream, 0.5) - d50, 2),
        "ayush_p50_ms_c1": round(a50, 2),
        "ayush_p99_ms_c1": round(a99, 2),
        "direct_p50_ms_c1": round(d50, 2),
        "direct_p99_ms_c1": round(d99, 2),
        "ayush_rps_c32": ayush_c32["rps"],
        "ayush_rps_c32_stream": ayush_c32_stream["rps"],
        "direct_rps_c32": direct_c32["rps"],
        "direct_rps_c32_stream": direct_c32_stream["rps"],
        "ayush_p50_ms_c32": ayush_c32["p50_ms"],
        "ayush_p99_ms_c32": ayush_c32["p99_ms"],
        "ayush_p50_ms_c32_stream": ayush_c32_stream["p50_ms"],
        "kafka_rtt_p50_ms": round(percentile(kafka, 0.5), 2),
        "kafka_rtt_p99_ms": round(percentile(kafka, 0.99), 2),
        "platform_cpu_ms_per_request_c32": round(sum(machine[p.name] for p in platform.procs), 2),
        # Every process's share, the services' and the load client's included:
        # on a small machine their sum, not the platform's alone, bounds requests/s.
        "machine_cpu_ms_per_request_c32": machine,
        "errors": ayush_c32["errors"] + ayush_c32_stream["errors"],
        "c1_requests": args.c1_requests,
        "seconds_per_c32_run": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "mean_ms_c1_ayush": round(statistics.fmean(ayush_c1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--c1-requests", type=int, default=300)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
