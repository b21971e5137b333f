"""`ayush replay --out`, `ayush dlq` and `ayush audit job` as an operator types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from infra.db import event_log
from infra.db.engine import Database
from infra.kafka.admin import create_topics
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import make_tenant, namespace_settings
from tests.harness import ROOT, unique


def ayush(services: ServiceAddresses, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ayush.cli", *args],
        cwd=ROOT,
        env={**os.environ, **services.as_env(), "AYUSH_TOPIC_PREFIX": prefix},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _failed(tenant: object, error: str = "x") -> Envelope[job_events.JobFailed]:
    job_id = uuid7()
    return Envelope[job_events.JobFailed](
        type=job_events.JOB_FAILED, tenant_id=tenant, actor=Actor(kind="system", id="test"),  # type: ignore[arg-type]
        correlation_id=job_id, payload=job_events.JobFailed(job_id=job_id, error=error),
    )  # fmt: skip


async def test_replay_out_and_dead_letters_from_the_command_line(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    prefix = unique("cli") + "."
    settings = namespace_settings(services, prefix)
    await create_topics(settings)
    tenant, other = uuid7(), uuid7()
    publisher = Publisher(settings)
    await publisher.start()
    try:
        mine = [_failed(tenant) for _ in range(3)]
        await publisher.publish_many([(topics.AI_JOB_LIFECYCLE.name, e) for e in mine])
        await publisher.publish(topics.AI_JOB_LIFECYCLE.name, _failed(other))
        parked = _failed(tenant, "parked")
        await publisher.send(
            settings.topic(topics.AI_JOB_LIFECYCLE.dead_letter), parked.model_dump_json().encode(),
            key=None, headers=[("ayush-dlq-error", b"ValidationError: bad"),
                               ("ayush-dlq-group", b"g"), ("ayush-dlq-attempts", b"3")],
        )  # fmt: skip
    finally:
        await publisher.stop()

    out = tmp_path / "events.jsonl"
    result = ayush(
        services, prefix, "replay", "--topic", topics.AI_JOB_LIFECYCLE.name,
        "--from", datetime.now(UTC).strftime("%Y-%m-%d"), "--tenant", str(tenant),
        "--type", job_events.JOB_FAILED, "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["matched"] == 3 and summary["read"] == 4
    assert summary["sources"] == {topics.AI_JOB_LIFECYCLE.name: "kafka"}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["id"] for e in lines) == sorted(str(e.id) for e in mine)

    listed = ayush(services, prefix, "dlq", "list", "--topic", topics.AI_JOB_LIFECYCLE.name)
    assert listed.returncode == 0, listed.stderr
    assert str(parked.id)[:8] in listed.stdout and "ValidationError" in listed.stdout
    shown = ayush(services, prefix, "dlq", "show", "--topic", topics.AI_JOB_LIFECYCLE.name, "0")
    detail = json.loads(shown.stdout)
    assert detail["error"] == "ValidationError: bad" and detail["attempts"] == 3
    assert detail["event"]["id"] == str(parked.id) and detail["pending"] is True
    purged = ayush(services, prefix, "dlq", "purge", "--topic", topics.AI_JOB_LIFECYCLE.name)
    assert purged.stdout.strip() == "purged 1 dead letters"
    retried = ayush(services, prefix, "dlq", "retry", "--topic", topics.AI_JOB_LIFECYCLE.name)
    assert retried.stdout.strip() == "re-drove 0 dead letters"

    bad = ayush(services, prefix, "replay", "--topic", "x", "--out", "a", "--into-group", "b")
    assert bad.returncode == 2 and "exactly one" in bad.stderr


async def test_audit_job_command_needs_an_admin_key(
    services: ServiceAddresses, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    standard = await make_tenant(db)
    event = _failed(admin.tenant_id, "kept for the audit")
    row = {
        "event_id": event.id, "topic": "t", "partition": 0, "offset": 7, "type": event.type,
        "version": 1, "tenant_id": event.tenant_id, "correlation_id": event.correlation_id,
        "causation_id": None, "actor_kind": "system", "actor_id": "test", "api_key_id": None,
        "occurred_at": event.occurred_at, "payload": event.payload.model_dump(mode="json"),
        "dead_letter_error": None,
    }  # fmt: skip
    await event_log.record(db, [row])
    job = str(event.correlation_id)

    result = ayush(services, "", "audit", "job", job, "--key", admin.key)
    assert result.returncode == 0, result.stderr
    trail = json.loads(result.stdout)
    assert [e["payload"]["error"] for e in trail["events"]] == ["kept for the audit"]

    refused = ayush(services, "", "audit", "job", job, "--key", standard.key)
    assert refused.returncode == 1 and "admin key" in refused.stderr
