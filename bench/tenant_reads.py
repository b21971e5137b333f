"""Benchmark of the row-level security wall on a read-heavy path: GET /v1/jobs/{id}.

The gateway's hot path makes no tenant read (admission and replies go
through Redis, the key lookup is cached), so bench/gateway.py cannot see the
wall. This reads one job back through `infra.db.jobs.get_job`, the read GET
/v1/jobs/{id} makes, with the wall on (role and tenant set per transaction,
policies applied) and off, in alternating rounds of the same run, at
concurrency 1 and 16; then times the whole route through an ingress (which
reads behind the wall) to put the difference in proportion. Prints one JSON
object.

    uv run python bench/tenant_reads.py [--reads 2000] [--rounds 5] [--http-requests 1000]

Uses the services in KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL when
set, else starts a local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services import BenchServices, bench_services
from bench.stats import percentile
from infra.db import jobs as job_store
from infra.db.engine import Database
from infra.db.tenants import create_api_key, ensure_tenant
from tests.harness import Platform, unique

JOBS = 200


async def _seed(db: Database) -> tuple[uuid.UUID, list[uuid.UUID], str]:
    """A tenant with JOBS finished jobs, and another tenant's as many (the policy filters)."""
    tenants = [(await ensure_tenant(db, unique(name)))[0].id for name in ("bench-", "other-")]
    jobs = [(uuid.uuid4(), tenant) for tenant in tenants for _ in range(JOBS)]
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO jobs (id, tenant_id, kind, model, status, request, request_event_id) "
                "VALUES (:id, :t, 'chat', 'm', 'succeeded', '{}', gen_random_uuid())"
            ),
            [{"id": job_id, "t": tenant} for job_id, tenant in jobs],
        )
        await session.execute(
            text(
                "INSERT INTO job_results (job_id, text, provider, model, event_id) "
                "VALUES (:id, 'answer', 'p', 'm', gen_random_uuid())"
            ),
            [{"id": job_id} for job_id, _ in jobs],
        )
    _, key = await create_api_key(db, tenants[0])
    return tenants[0], [job_id for job_id, tenant in jobs if tenant == tenants[0]], key


async def _reads(db: Database, tenant: uuid.UUID, ids: list[uuid.UUID], n: int, c: int) -> float:
    """Seconds per read, `n` reads by `c` concurrent readers."""
    todo = iter(range(n))

    async def reader() -> None:
        for i in todo:
            found = await job_store.get_job(db, tenant, ids[i % len(ids)])
            assert found is not None and found.result is not None

    started = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(c)))
    return (time.perf_counter() - started) / n


async def _compare(url: str, args: argparse.Namespace) -> dict[str, Any]:
    plain = Database(url, pool_size=16)
    walled = Database(url, pool_size=16, tenant_wall=True)
    try:
        tenant, ids, key = await _seed(plain)
        out: dict[str, Any] = {"key": key, "tenant": tenant, "ids": ids}
        for c in (1, 16):
            for db in (plain, walled):  # warm the pools and the plans
                await _reads(db, tenant, ids, 200, c)
            times: dict[str, list[float]] = {"off": [], "on": []}
            for r in range(args.rounds):
                order = [("off", plain), ("on", walled)]
                for name, db in order if r % 2 == 0 else order[::-1]:
                    times[name].append(await _reads(db, tenant, ids, args.reads, c))
            off, on = statistics.median(times["off"]), statistics.median(times["on"])
            out[f"c{c}"] = {
                "wall_off_us_per_read": round(off * 1e6, 1),
                "wall_on_us_per_read": round(on * 1e6, 1),
                "added_us_per_read": round((on - off) * 1e6, 1),
                "added_pct_of_read": round(100 * (on - off) / off, 1),
            }
        return out
    finally:
        await plain.close()
        await walled.close()


def _route(base: str, key: str, ids: list[uuid.UUID], n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    latencies = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for i in range(n + 100):
            started = time.perf_counter()
            response = http.get(f"/v1/jobs/{ids[i % len(ids)]}")
            assert response.status_code == 200, response.text
            if i >= 100:  # the first hundred warm the ingress
                latencies.append(time.perf_counter() - started)
    return latencies


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_services() as services:
        return measure(args, services)


def measure(args: argparse.Namespace, services: BenchServices) -> dict[str, Any]:
    settings = services.settings
    assert settings.database_url is not None
    result = asyncio.run(_compare(settings.database_url, args))
    key, ids = result.pop("key"), result.pop("ids")
    result.pop("tenant")
    if args.http_requests:
        env = services.env()
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            route = _route(platform.url, key, ids, args.http_requests)
        finally:
            platform.stop()
        p50 = percentile(route, 0.5)
        added = result["c1"]["added_us_per_read"] / 1e6
        result["route_c1"] = {
            "p50_ms": round(p50 * 1e3, 2),
            "p99_ms": round(percentile(route, 0.99) * 1e3, 2),
            "wall_share_of_p50_pct": round(100 * added / p50, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="reads per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per variant")
    parser.add_argument("--http-requests", type=int, default=1000, help="0 skips the route")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
