"""Webhook ingest and connector actions, end to end over HTTP; prints one JSON object.

Starts an ingress and the integrations worker (with services from the
environment, else a local stack) and a fake Slack. Measures:
- signed GitHub deliveries answered by /hooks (verify, dedupe, publish): rate and latency;
- Slack actions from POST /v1/actions to the job's `succeeded`: rate and latency;
- vendor calls per action (must be exactly 1).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.services import bench_key, bench_services
from bench.stats import percentile
from infra.vault import Vault
from tests.fakes.vendors import FakeVendors
from tests.harness import Platform

DELIVERIES = 400
ACTIONS = 150
CONCURRENCY = 16


def pct(values: list[float], q: float) -> float:
    """In milliseconds, from seconds."""
    return round(percentile(values, q) * 1000, 1)


async def refused(response: httpx.Response) -> None:
    """Stop at the first refusal, with what the platform said (not at a missing field)."""
    if response.is_error:
        await response.aread()
        raise RuntimeError(f"{response.request.method} {response.url.path}: "
                           f"{response.status_code} {response.text}")  # fmt: skip


async def measure(url: str, key: str, vendors: FakeVendors) -> dict[str, float | int]:
    auth = {"Authorization": f"Bearer {key}"}
    limit = asyncio.Semaphore(CONCURRENCY)
    hooks = {"response": [refused]}
    async with httpx.AsyncClient(base_url=url, timeout=60, event_hooks=hooks) as api:
        hook = (await api.post("/v1/webhook-endpoints",
                               json={"source": "github", "secret": "bench-secret"},
                               headers=auth)).json()  # fmt: skip
        ingest: list[float] = []

        async def deliver(n: int) -> None:
            body = json.dumps({"action": "opened", "issue": {"number": n}}).encode()
            digest = hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
            headers = {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "issues",
                       "X-GitHub-Delivery": str(uuid.uuid4())}  # fmt: skip
            async with limit:
                started = time.perf_counter()
                response = await api.post(f"/hooks/{hook['id']}", content=body, headers=headers)
                ingest.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text

        began = time.perf_counter()
        await asyncio.gather(*(deliver(n) for n in range(DELIVERIES)))
        ingest_s = time.perf_counter() - began

        slack = (await api.post("/v1/connections",
                                json={"connector": "slack", "credentials": {"bot_token": "x"}},
                                headers=auth)).json()["id"]  # fmt: skip
        run = uuid.uuid4().hex[:8]
        latencies: list[float] = []

        async def act(n: int) -> None:
            async with limit:
                started = time.perf_counter()
                params = {"channel": f"B{run}-{n}", "text": "bench"}
                body = {"connection_id": slack, "action": "post_message", "params": params}
                job = (await api.post("/v1/actions", headers=auth, json=body)).json()["id"]
                while True:
                    status = (await api.get(f"/v1/jobs/{job}", headers=auth)).json()["status"]
                    if status in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - started)
            assert status == "succeeded"

        began = time.perf_counter()
        await asyncio.gather(*(act(n) for n in range(ACTIONS)))
        actions_s = time.perf_counter() - began
    calls = len(vendors.matching("slack", f"B{run}-"))
    return {
        "webhook_deliveries": DELIVERIES,
        "webhook_ingest_per_s": round(DELIVERIES / ingest_s, 1),
        "webhook_ingest_p50_ms": pct(ingest, 0.5),
        "webhook_ingest_p95_ms": pct(ingest, 0.95),
        "actions": ACTIONS,
        "actions_per_s": round(ACTIONS / actions_s, 1),
        "action_e2e_p50_ms": pct(latencies, 0.5),
        "action_e2e_p95_ms": pct(latencies, 0.95),
        "vendor_calls_per_action": round(calls / ACTIONS, 3),
        "concurrency": CONCURRENCY,
        "ingest_mean_ms": round(statistics.mean(ingest) * 1000, 1),
    }


def main() -> None:
    with bench_services() as services:
        vendors = FakeVendors().start()
        env = services.env(
            **vendors.env(), AYUSH_ENCRYPTION_KEYS=Vault.new_key_setting("bench"),
            AYUSH_LOG_LEVEL="INFO",
        )  # fmt: skip
        platform = Platform(env, services.work / "logs")
        try:
            platform.start_ingress()
            platform.start_worker("integrations")
            # Registering the webhook endpoint and the Slack connection takes an administrator.
            key = asyncio.run(bench_key(services.settings, "admin"))
            print(json.dumps(asyncio.run(measure(platform.url, key, vendors))))
        finally:
            platform.stop()
            vendors.stop()


if __name__ == "__main__":
    main()
