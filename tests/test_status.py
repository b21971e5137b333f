"""`ayush status`: offsets, lag and live members of every group, from the real cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx

from ayush.groups import GROUPS
from infra.kafka.status import ClusterStatus, cluster_status
from infra.local_stack import ServiceAddresses
from tests.conftest import Running, TenantKey
from tests.harness import ROOT, eventually
from tests.test_jobs_http import chat, submit, wait_finished


async def test_status_reports_offsets_lag_and_members(
    client: httpx.AsyncClient, tenant: TenantKey, running: Running, services: ServiceAddresses
) -> None:
    jobs = [await submit(client, tenant, chat(f"status {n}")) for n in range(4)]
    for job_id in jobs:
        await wait_finished(client, tenant, job_id)
    settings = running.settings
    groups = {name: spec.topics for name, spec in GROUPS.items()}

    async def caught_up() -> ClusterStatus | None:
        status = await cluster_status(settings, groups)
        group = next(g for g in status.groups if g.group == settings.group("model-calls"))
        # Kafka's description of the group must be read (Kafka 4 answers
        # DescribeGroups v3 and up only); Tansu's may stay unknown (None).
        members = (1, None) if services.kafka_flavour == "tansu" else (1,)
        return status if group.lag == 0 and group.members in members else None

    status = await eventually(caught_up, 20, "the model-calls group to commit everything")
    requested = next(t for t in status.topics if t.topic == settings.topic("ai.job.requested"))
    assert requested.partitions == settings.kafka_max_partitions and requested.messages >= 4
    group = next(g for g in status.groups if g.group == settings.group("model-calls"))
    if group.members is None:
        assert group.state == "Unknown" and group.note and "members unknown" in group.note
    else:
        assert group.state == "Stable" and group.note is None
    assert {p.topic for p in group.partitions} == {settings.topic("ai.job.requested")}
    assert sum(p.end for p in group.partitions) == requested.messages
    assert all(p.committed == p.end for p in group.partitions if p.end)

    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ayush.cli", "status"],
        cwd=ROOT, env={**os.environ, **running.platform.env, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert settings.group("model-calls") in shown.stdout
    assert settings.topic("usage.recorded.dlq") in shown.stdout
    if group.members is None:
        assert "members unknown" in shown.stdout
    else:
        assert "Stable" in shown.stdout


async def test_status_fits_80_columns_and_speaks_json(running: Running) -> None:
    settings = running.settings

    def status(*args: str) -> str:
        shown = subprocess.run(
            [sys.executable, "-m", "ayush.cli", "status", *args],
            cwd=ROOT, env={**os.environ, **running.platform.env, "COLUMNS": "80"},
            capture_output=True, text=True, timeout=180, check=True,
        )  # fmt: skip
        return shown.stdout

    text = await asyncio.to_thread(status)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Every header is shown whole, not folded into broken words ("committe" / "d").
    header_words = {w for line in lines if line.startswith("┃") for w in line.strip("┃ ").split()}
    assert {"topic", "partitions", "messages", "part", "end", "committed", "lag"} <= header_words
    assert settings.group("model-calls") in text

    document = json.loads(await asyncio.to_thread(status, "--json"))
    group = next(g for g in document["groups"] if g["group"] == settings.group("model-calls"))
    assert {"state", "members", "lag", "note", "partitions"} <= set(group)
    assert all(set(p) == {"topic", "partition", "end", "committed", "lag"}
               for p in group["partitions"])  # fmt: skip
    assert group["lag"] == sum(p["lag"] for p in group["partitions"])
    requested = next(
        t for t in document["topics"] if t["topic"] == settings.topic("ai.job.requested")
    )
    assert requested["partitions"] == settings.kafka_max_partitions
