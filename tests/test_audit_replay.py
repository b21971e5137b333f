"""Audit trails, and history replayed from Kafka or from the S3 archive.

One platform per test (ingress, model-calls, archive) in its own topic
namespace: the replay test deletes its topics to drop Kafka's copy. The
replay test adds the usage and the memory group, the latter embedding through
the fake OpenAI server, so a replay that embedded again would be seen there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from ayush import replay
from consumers.projections import jobs as job_projection
from infra.db.engine import Database
from infra.db.event_log import job_trail
from infra.db.models import ApiKey, Tenant
from infra.db.projection import snapshot
from infra.db.tenants import find_key_owner
from infra.kafka.admin import create_topics
from infra.kafka.publisher import Publisher
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from schemas import topics
from schemas.memory import STORED_CHUNKS_PER_EVENT, user_key
from tests.conftest import Running, TenantKey, make_tenant, namespace_settings, new_platform
from tests.databases import create_empty_database, drop_database
from tests.fakes.llm import FakeLLMServer
from tests.harness import ROOT, eventually, unique
from tests.test_jobs_http import chat, submit, wait_finished
from tests.test_memories_http import remember, wait_status

FAST_ARCHIVE = {"AYUSH_ARCHIVE_BATCH_AGE_S": "0.1"}
# Embeddings from the fake OpenAI server, in chunks small enough that one
# memory takes more than one memory.stored event.
FAKE_OPENAI_EMBEDDINGS = {
    "AYUSH_MEMORY_EMBEDDER": "openai",
    "AYUSH_MEMORY_EMBEDDING_DIM": "384",
    "AYUSH_MEMORY_CHUNK_CHARS": "100",
    "AYUSH_MEMORY_CHUNK_OVERLAP": "20",
}


@pytest.fixture
def archived(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path: Path
) -> Iterator[Running]:
    platform, settings = new_platform(services, fake_llm, tmp_path / "logs")
    with platform.serving("model-calls"):
        platform.start_worker("archive", extra_env=FAST_ARCHIVE)
        yield Running(platform, settings)


@pytest.fixture
async def http(archived: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=archived.platform.url, timeout=30) as client:
        yield client


async def _logged(db: Database, tenant: TenantKey, job_id: str, n: int) -> list[object] | None:
    rows = await job_trail(db, tenant.tenant_id, uuid.UUID(job_id))  # type: ignore[arg-type]
    return list(rows) if len(rows) >= n else None


@pytest.mark.timeout(300)  # three processes on a shared machine
async def test_audit_trail_is_complete_and_ordered(
    archived: Running, http: httpx.AsyncClient, db: Database
) -> None:
    admin = await make_tenant(db, admin=True)
    # the first provider call answers 500: the trail shows the retry
    job_id = await submit(http, admin, chat("audit me", model="gpt-fake@fail=1"))
    assert (await wait_finished(http, admin, job_id))["status"] == "succeeded"
    await eventually(lambda: _logged(db, admin, job_id, 5), what="the job's events archived")

    response = await http.get(f"/v1/audit/jobs/{job_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    trail = response.json()["events"]
    assert [e["type"] for e in trail] == [
        "ai.job.requested", "ai.job.started", "ai.job.retrying", "ai.job.succeeded",
        "usage.recorded",
    ]  # fmt: skip
    times = [datetime.fromisoformat(e["occurred_at"]) for e in trail]
    assert times == sorted(times)
    owner = await find_key_owner(db, admin.key)
    assert owner is not None
    assert {e["tenant_id"] for e in trail} == {str(admin.tenant_id)}
    assert trail[0]["actor_kind"] == "api_key" and trail[0]["actor_id"] == str(owner.key_id)
    assert trail[0]["api_key_id"] == trail[4]["api_key_id"] == str(owner.key_id)
    assert {e["actor_kind"] for e in trail[1:]} == {"system"}
    assert {e["causation_id"] for e in trail[1:]} == {trail[0]["event_id"]}
    assert trail[1]["payload"]["provider"] == "openai"  # the routing decision
    assert trail[2]["payload"]["attempt"] == 2 and "500" in trail[2]["payload"]["error"]
    assert trail[3]["payload"]["text"] == "reply to: audit me"
    assert trail[0]["topic"] == archived.settings.topic(topics.AI_JOB_REQUESTED.name)

    # a standard key of the same tenant may not read it; another tenant sees nothing
    standard = await make_tenant(db)
    response = await http.get(f"/v1/audit/jobs/{job_id}", headers=standard.headers)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    other_admin = await make_tenant(db, admin=True)
    response = await http.get(f"/v1/audit/jobs/{job_id}", headers=other_admin.headers)
    assert response.status_code == 404


async def add_tenant_and_key(db: Database, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    async with db.transaction() as session:
        session.add(Tenant(id=tenant_id, name=f"v1-{tenant_id}", settings={}))
    async with db.transaction() as session:
        session.add(ApiKey(id=key_id, tenant_id=tenant_id, key_hash=uuid.uuid4().hex, prefix="x"))


async def _drop_topics(settings: Settings) -> None:
    bootstrap, _, _ = settings.require_services()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [settings.topic(n) for t in topics.ALL for n in (t.name, t.dead_letter)]
        await admin.delete_topics(names)
    finally:
        await admin.close()


def ayush_cli(
    services: ServiceAddresses, settings: Settings, *args: str
) -> subprocess.CompletedProcess[str]:
    """The `ayush` command in this test's topic namespace, with the test's fake vendors."""
    env = {**os.environ, **services.as_env(), "AYUSH_TOPIC_PREFIX": settings.topic_prefix}
    if settings.kafka_max_partitions is not None:
        env["AYUSH_KAFKA_MAX_PARTITIONS"] = str(settings.kafka_max_partitions)
    if settings.encryption_keys:  # users' sealed events open with the platform's key ring
        env["AYUSH_ENCRYPTION_KEYS"] = settings.encryption_keys
    return subprocess.run(
        [sys.executable, "-m", "ayush.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


async def remember_and_forget(
    http: httpx.AsyncClient, tenant: TenantKey
) -> tuple[dict[str, int], int]:
    """Memories of two users, a forget and a user wipe; how many events each user's key has,
    and how many of them are forgotten (the wipe destroyed the user's data key)."""
    alice, bob = unique("alice-"), unique("bob-")
    long_text = " ".join(f"fact {i} about the garden of alice" for i in range(120))
    kept = [
        await remember(http, tenant, alice, long_text, kind="garden"),
        await remember(http, tenant, alice, "alice drinks green tea"),
    ]
    dropped = await remember(http, tenant, alice, "alice fact to forget")
    bobs_old = await remember(http, tenant, bob, "bob old fact")
    for memory_id in [*kept, dropped, bobs_old]:
        await wait_status(http, tenant, memory_id, "stored")
    chunks = (await wait_status(http, tenant, kept[0], "stored"))["chunks"]
    assert chunks > STORED_CHUNKS_PER_EVENT  # stored in two events
    await http.delete(f"/v1/memories/{dropped}", headers=tenant.headers)
    await http.delete("/v1/memories", params={"user_id": bob}, headers=tenant.headers)
    bobs_new = await remember(http, tenant, bob, "bob new fact after the wipe")
    await wait_status(http, tenant, bobs_new, "stored")
    # remembers, memory.stored (the long one in two parts), the forget, the wipe; bob's
    # old remember and stored are sealed with the key the wipe destroyed
    return {alice: 3 + 4 + 1, bob: 2 + 2 + 1}, 2


async def _memories_settled(db: Database, tenant: TenantKey) -> bool:
    """The live memory group has applied the forget and the wipe."""
    async with db.session() as session:
        found = await session.execute(
            text("SELECT status, count(*) FROM memories WHERE tenant_id = :t GROUP BY status"),
            {"t": tenant.tenant_id},
        )
        return dict(found.all()) == {"stored": 3, "deleted": 2}


async def _usage_counted(db: Database, tenant: TenantKey, n: int) -> bool:
    async with db.session() as session:
        found = await session.execute(
            text("SELECT coalesce(sum(events), 0) FROM usage_daily WHERE tenant_id = :t"),
            {"t": tenant.tenant_id},
        )
        return int(found.scalar_one()) == n


@pytest.mark.timeout(420)  # five processes on a shared machine
async def test_archive_then_replay_from_s3_rebuilds_the_projection(
    archived: Running,
    http: httpx.AsyncClient,
    db: Database,
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = archived.settings
    archived.platform.start_worker("usage")
    archived.platform.start_worker("memory", extra_env=FAKE_OPENAI_EMBEDDINGS)
    started = datetime.now(UTC) - timedelta(minutes=1)
    tenant = await make_tenant(db, admin=True)
    job_ids = [
        await submit(http, tenant, chat("one", model="gpt-fake", user_id="u1")),
        await submit(http, tenant, chat("two", model="claude-fake", metadata={"app": "cli"})),
        await submit(http, tenant, chat("three", model="gpt-fake@always=400")),
        await submit(http, tenant, chat("four", model="local-echo")),
    ]
    statuses = [(await wait_finished(http, tenant, j))["status"] for j in job_ids]
    assert statuses == ["succeeded", "succeeded", "failed", "succeeded"]
    users, forgotten = await remember_and_forget(http, tenant)
    for job_id, n in zip(job_ids, (4, 4, 3, 4), strict=True):
        await eventually(lambda j=job_id, n=n: _logged(db, tenant, j, n), what="events archived")
    for user, n in users.items():
        key = str(user_key(tenant.tenant_id, user))  # type: ignore[arg-type]
        await eventually(lambda k=key, n=n: _logged(db, tenant, k, n), 60, "memory archived")
    await eventually(lambda: _memories_settled(db, tenant), 60, "the live memory store")
    # three answered chat jobs, and one embedding call for each of the five remembers
    usage_events = 3 + 5
    await eventually(
        lambda: _usage_counted(db, tenant, usage_events), 60, "the usage group to count"
    )

    window = replay.Query(
        topics=[topics.AI_JOB_REQUESTED.name], start=started,
        end=datetime.now(UTC) + timedelta(minutes=1), tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
    )  # fmt: skip
    # while Kafka has the range, the export reads it from there
    out = tmp_path / "requested.jsonl"
    report = await replay.export(settings, window, out)
    assert report.sources == {topics.AI_JOB_REQUESTED.name: "kafka"}
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    # exported as stored: a job's id is its events' correlation id (a user's payload is sealed)
    assert sorted(e["correlation_id"] for e in exported) == sorted(job_ids)
    assert sum("sealed" in e["payload"] for e in exported) == 1  # the job of user u1

    archived.platform.stop()
    await _drop_topics(settings)
    calls_before = len(fake_llm.calls)
    assert any(c.model == "text-embedding-3-small" for c in fake_llm.calls)  # live embedded there
    # a replayed model-calls handler would reach the fake vendor here
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_llm.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    for name, value in FAKE_OPENAI_EMBEDDINGS.items():  # and an embedding replay there
        monkeypatch.setenv(name, value)

    # the same export now comes from the archive
    report = await replay.export(settings, window, out)
    assert report.sources == {topics.AI_JOB_REQUESTED.name: "archive"}
    assert sorted(
        json.loads(line)["correlation_id"] for line in out.read_text().splitlines()
    ) == sorted(job_ids)

    rebuilt_url = await create_empty_database(services.database_url)
    rebuild = settings.model_copy(update={"database_url": rebuilt_url})
    try:
        for group, topic_names, handled in (
            # requested, started, ended
            (job_projection.group.name, job_projection.group.topics, 4 * 3),
            ("usage", [topics.USAGE_RECORDED.name, topics.USAGE_BUDGET.name], usage_events),
        ):
            query = replay.Query(
                topics=topic_names, start=window.start, end=window.end,
                tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
            )  # fmt: skip
            report = await replay.into_group(
                rebuild, query, group, reference_database_url=services.database_url
            )
            assert report.failures == []
            assert set(report.sources.values()) == {"archive"}
            assert report.handled == handled, group
        # the memory store through the command line, the tenant named by its name
        async with db.session() as session:
            name = (await session.execute(text("SELECT name FROM tenants WHERE id = :t"),
                                          {"t": tenant.tenant_id})).scalar_one()  # fmt: skip
        since, until = (
            window.start.isoformat(timespec="seconds"),
            window.end.isoformat(timespec="seconds"),
        )
        result = ayush_cli(
            services, settings, "replay", "--into-group", "memory-projection", "--tenant", name,
            "--from", since, "--to", until, "--database-url", rebuilt_url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["handled"] == sum(users.values()) - forgotten
        assert summary["forgotten"] == forgotten and summary["failures"] == []
        assert set(summary["sources"].values()) == {"archive"}

        result = ayush_cli(services, settings, "verify", "--tenant", name, "--against", rebuilt_url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith("0 differences")
        # the same, row for row, through the API
        differences = await replay.verify(
            services.database_url,
            rebuilt_url,
            [tenant.tenant_id],  # type: ignore[list-item]
        )
        assert differences == []

        # the model-calls group in side mode goes through every request, calling no one
        report = await replay.into_group(settings, window, "model-calls")
        assert report.failures == [] and report.handled == 4
        assert len(fake_llm.calls) == calls_before  # no chat call, no embedding call

        # a lost vector and a lost usage row are reported
        rebuilt = Database(rebuilt_url, pool_size=1)
        try:
            async with rebuilt.transaction() as session:
                params = {"t": tenant.tenant_id}
                lose_a_vector = text(
                    "DELETE FROM memory_chunks WHERE id = "
                    "(SELECT min(id) FROM memory_chunks WHERE tenant_id = :t)"
                )
                await session.execute(lose_a_vector, params)
                count_twice = text(
                    "UPDATE usage_daily SET events = events + 1 WHERE tenant_id = :t"
                )
                await session.execute(count_twice, params)
        finally:
            await rebuilt.close()
        differences = await replay.verify(
            services.database_url, rebuilt_url, [tenant.tenant_id],  # type: ignore[list-item]
            ("usage", "memory"),
        )  # fmt: skip
        assert sum(d.startswith("memory_chunks:") for d in differences) == 1
        assert any(d.startswith("usage_daily:") and ".events:" in d for d in differences)

        # a rebuild that misses events is reported
        partial = replay.Query(
            topics=[topics.AI_JOB_REQUESTED.name], start=window.start, end=window.end,
            tenant_id=tenant.tenant_id,  # type: ignore[arg-type]
        )  # fmt: skip
        second_url = await create_empty_database(services.database_url)
        try:
            await replay.into_group(
                settings.model_copy(update={"database_url": second_url}), partial,
                job_projection.group.name, reference_database_url=services.database_url,
            )  # fmt: skip
            differences = await replay.verify(
                services.database_url,
                second_url,
                [tenant.tenant_id],  # type: ignore[list-item]
            )
            assert any(d.endswith("missing from the rebuild") for d in differences)
            assert any(".status:" in d for d in differences)
        finally:
            await drop_database(services.database_url, second_url)
    finally:
        await drop_database(services.database_url, rebuilt_url)


def test_an_unknown_tenant_is_refused(services: ServiceAddresses) -> None:
    settings = namespace_settings(services, unique("unknown") + ".")
    for tenant in ("no-such-tenant", str(uuid.uuid4())):  # verify compares rows: both must exist
        result = ayush_cli(
            services, settings, "verify", "--tenant", tenant, "--against", "postgresql://x"
        )
        assert result.returncode == 2
        assert f"no tenant named or with the id '{tenant}'" in result.stderr
    # replay reads history, which outlives tenants: an id goes, an unknown name does not
    result = ayush_cli(
        services, settings, "replay", "--into-group", "usage", "--tenant", "no-such-tenant",
        "--source", "kafka",
    )  # fmt: skip
    assert result.returncode == 2 and "no tenant named" in result.stderr


async def test_version_1_events_still_replay_into_the_projection(
    services: ServiceAddresses, db: Database
) -> None:
    """Stored samples of the first schema versions, published as they were, rebuild a job."""
    samples = Path(__file__).parent / "data" / "events"
    names = ("ai.job.requested.v1", "ai.job.started.v1", "ai.job.succeeded.v1")
    values = [(samples / f"{n}.json").read_bytes() for n in names]
    first = json.loads(values[0])
    # fresh ids for this run, the rest as stored
    tenant_id, job_id = uuid.uuid4(), uuid.uuid4()
    text = [
        v.decode()
        .replace(first["tenant_id"], str(tenant_id))
        .replace(first["correlation_id"], str(job_id))
        for v in values
    ]
    settings = namespace_settings(services, unique("v1") + ".")
    await create_topics(settings)
    publisher = Publisher(settings)
    await publisher.start()
    try:
        for name, body in zip(names, text, strict=True):
            topic = topics.AI_JOB_REQUESTED if "requested" in name else topics.AI_JOB_LIFECYCLE
            await publisher.send(settings.topic(topic.name), body.encode(), key=None, headers=[])
    finally:
        await publisher.stop()

    rebuilt_url = await create_empty_database(services.database_url)
    try:
        target = Database(rebuilt_url, pool_size=1)
        try:
            await add_tenant_and_key(target, tenant_id, uuid.UUID(first["actor"]["id"]))
            query = replay.Query(
                topics=job_projection.group.topics, start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime.now(UTC) + timedelta(minutes=1),
            )  # fmt: skip
            rebuild = settings.model_copy(update={"database_url": rebuilt_url})
            report = await replay.into_group(rebuild, query, job_projection.group.name)
            assert report.failures == [] and report.handled == 3
            rows = await snapshot(target, [tenant_id])
        finally:
            await target.close()
    finally:
        await drop_database(services.database_url, rebuilt_url)
    job = rows[f"jobs:{job_id}"]
    assert job["status"] == "succeeded" and job["provider"] == "openai" and job["attempts"] == 1
    result = rows[f"job_results:{job_id}"]
    # version 1 did not record the answer: the rebuilt row says so with an empty text
    assert result["text"] == "" and result["output_tokens"] == 4
    assert result["cost_usd"] == "0.00000000"
