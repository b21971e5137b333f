"""Forget means forgotten: a user's text is sealed with their data key wherever it is
written, and forgetting the user destroys the key, so no copy anywhere (the Kafka topics,
the S3 archive, the event index) reads in clear any more; replay and verify go on.

One platform (ingress, model-calls, memory, archive) in its own topic namespace.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from ayush import replay
from consumers.projections import jobs as job_projection
from infra.db.engine import Database
from infra.db.event_log import job_trail
from infra.local_stack import ServiceAddresses
from infra.s3 import ObjectStore
from infra.settings import Settings
from schemas import topics
from schemas.memory import user_key
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.databases import create_empty_database, drop_database
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat, submit, wait_finished
from tests.test_memories_http import remember, wait_status

FAST_ARCHIVE = {"AYUSH_ARCHIVE_BATCH_AGE_S": "0.1"}
HASHING = {"AYUSH_MEMORY_EMBEDDER": "hashing"}


@pytest.fixture
def platform(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path: Path
) -> Iterator[Running]:
    platform, settings = new_platform(services, fake_llm, tmp_path / "logs")
    with platform.serving("model-calls"):
        platform.start_worker("memory", extra_env=HASHING)
        platform.start_worker("archive", extra_env=FAST_ARCHIVE)
        yield Running(platform, settings)


@pytest.fixture
async def http(platform: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.platform.url, timeout=30) as client:
        yield client


async def topic_bytes(settings: Settings, *, raw: bool) -> bytes:
    """Every record of every topic of the namespace (dead letters too), values joined."""
    values = []
    for topic in topics.ALL:
        for name in (topic.name, topic.dead_letter):
            records = await read_topic(settings, name, raw=raw)
            values += [r.value or b"" for r in records]
    return b"\n".join(values)


async def archive_bytes(settings: Settings) -> bytes:
    """Every archived object of the namespace, gunzipped."""
    store = await ObjectStore(settings).start()
    try:
        bodies = []
        async for key in store.list(f"{settings.archive_prefix}/{settings.topic_prefix}"):
            body = await store.get(key)
            if body is not None and key.endswith(".gz"):
                bodies.append(gzip.decompress(body))
        return b"\n".join(bodies)
    finally:
        await store.close()


async def event_log_text(db: Database, tenant_id: object) -> str:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT payload::text FROM event_log WHERE tenant_id = :t"), {"t": tenant_id}
        )
        return "\n".join(row[0] for row in rows)


async def _logged(db: Database, tenant: TenantKey, correlation: str, n: int) -> bool:
    rows = await job_trail(db, tenant.tenant_id, uuid.UUID(correlation))  # type: ignore[arg-type]
    return len(rows) >= n


async def _forgotten_in_memory_group(db: Database, tenant: TenantKey, user: str) -> bool:
    """The memory group applied the forget: the cut-off is recorded and no chunk is left."""
    async with db.session() as session:
        found = await session.execute(
            text(
                "SELECT (SELECT count(*) FROM memory_user_forgets WHERE tenant_id = :t "
                "AND user_id = :u), (SELECT count(*) FROM memory_chunks WHERE tenant_id = :t "
                "AND user_id = :u)"
            ),
            {"t": tenant.tenant_id, "u": user},
        )
        forgets, chunks = found.one()
        return forgets == 1 and chunks == 0


@pytest.mark.timeout(420)  # four processes on a shared machine
async def test_a_forgotten_users_text_is_nowhere_in_clear(
    platform: Running, http: httpx.AsyncClient, db: Database, services: ServiceAddresses
) -> None:
    settings = platform.settings
    started = datetime.now(UTC) - timedelta(minutes=1)
    admin = await make_tenant(db, admin=True)
    gone, kept = unique("gone-"), unique("kept-")
    memory_marker, prompt_marker, kept_marker = (uuid.uuid4().hex for _ in range(3))
    gone_memory = await remember(http, admin, gone, f"my secret is {memory_marker}")
    kept_memory = await remember(http, admin, kept, f"my note is {kept_marker}")
    # The fake model answers "reply to: <prompt>": the marker is in the prompt and the answer.
    job_id = await submit(http, admin, chat(f"tell me {prompt_marker}", user_id=gone))
    assert (await wait_finished(http, admin, job_id))["status"] == "succeeded"
    for memory_id in (gone_memory, kept_memory):
        await wait_status(http, admin, memory_id, "stored")
    # archived: the job's requested, started, succeeded and usage events; each user's
    # remember and stored
    await eventually(lambda: _logged(db, admin, job_id, 4), 60, "the job archived")
    for user in (gone, kept):
        key = str(user_key(admin.tenant_id, user))  # type: ignore[arg-type]
        await eventually(lambda k=key: _logged(db, admin, k, 2), 60, "the memories archived")
    markers = (memory_marker, prompt_marker)

    # Before: sealed in every copy, and readable with the key (so the checks below can fail).
    opened = await topic_bytes(settings, raw=True)
    assert not any(m.encode() in opened for m in markers) and b'"sealed"' in opened
    opened = await topic_bytes(settings, raw=False)
    assert all(m.encode() in opened for m in markers)
    assert b'\\"sealed\\"' in await archive_bytes(settings)  # a JSON string in each line
    logged = await event_log_text(db, admin.tenant_id)
    assert '"sealed"' in logged and not any(m in logged for m in markers)
    trail = (await http.get(f"/v1/audit/jobs/{job_id}", headers=admin.headers)).json()
    assert trail["events"][0]["payload"]["job"]["messages"][0]["content"] == (
        f"tell me {prompt_marker}"
    )

    # Only the tenant's administration may forget a user.
    developer = await make_tenant(db)
    answer = await http.delete(f"/v1/users/{gone}", headers=developer.headers)
    assert answer.status_code == 403, answer.text
    answer = await http.delete(f"/v1/users/{gone}", headers=admin.headers)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["user_id"] == gone and body["forgotten"] and body["key_destroyed"]
    assert body["erased"]["jobs"] == 1 and body["erased"]["job_results"] == 1
    again = await http.delete(f"/v1/users/{gone}", headers=admin.headers)  # idempotent
    assert again.status_code == 202 and again.json()["key_destroyed"] is False
    too_long = await http.delete(f"/v1/users/{'x' * 201}", headers=admin.headers)
    assert too_long.status_code == 422

    await eventually(
        lambda: _forgotten_in_memory_group(db, admin, gone), 60, "the memory group to forget"
    )
    # After: nowhere in clear, with or without the key ring.
    for raw in (True, False):
        everywhere = await topic_bytes(settings, raw=raw)
        assert not any(m.encode() in everywhere for m in markers)
        assert kept_marker.encode() in everywhere or raw  # another user's still opens
    archived = await archive_bytes(settings)
    assert archived and not any(m.encode() in archived for m in markers)
    logged = await event_log_text(db, admin.tenant_id)
    assert not any(m in logged for m in markers)
    async with db.session() as session:
        projections = await session.execute(
            text(
                "SELECT concat_ws(' ', j.request::text, r.text, m.text) FROM jobs j "
                "LEFT JOIN job_results r ON r.job_id = j.id "
                "LEFT JOIN memories m ON m.tenant_id = j.tenant_id AND m.user_id = j.user_id "
                "WHERE j.id = :job"
            ),
            {"job": job_id},
        )
        left = projections.scalar_one()
    assert not any(m in left for m in markers) and '"redacted": true' in left
    # The audit trail shows the user's payloads redacted, the rest as it was.
    trail = (await http.get(f"/v1/audit/jobs/{job_id}", headers=admin.headers)).json()["events"]
    by_type = {e["type"]: e["payload"] for e in trail}
    redacted = {"redacted": True, "reason": "user forgotten"}
    assert by_type["ai.job.requested"] == by_type["ai.job.succeeded"] == redacted
    assert by_type["ai.job.started"]["job_id"] == job_id
    # The other user is untouched.
    assert (await wait_status(http, admin, kept_memory, "stored"))["text"].endswith(kept_marker)

    # Replay of the range goes through (the forgotten user's events skipped), and verify
    # finds the rebuild equal for everyone else.
    rebuilt_url = await create_empty_database(services.database_url)
    rebuild = settings.model_copy(update={"database_url": rebuilt_url})
    try:
        end = datetime.now(UTC) + timedelta(minutes=1)
        for group in ("memory-projection", job_projection.group.name):
            query = replay.Query(
                topics=replay.replay_spec(group).topics, start=started, end=end,
                tenant_id=admin.tenant_id,  # type: ignore[arg-type]
            )  # fmt: skip
            report = await replay.into_group(
                rebuild, query, group, reference_database_url=services.database_url
            )
            assert report.failures == [], group
            assert report.forgotten >= 1 and report.handled >= 1, group
        differences = await replay.verify(
            services.database_url, rebuilt_url, [admin.tenant_id],  # type: ignore[list-item]
            ("jobs", "memory"),
        )  # fmt: skip
        assert differences == []
        rebuilt = Database(rebuilt_url, pool_size=1)
        try:
            async with rebuilt.session() as session:
                users = await session.execute(
                    text("SELECT DISTINCT user_id FROM memory_chunks WHERE tenant_id = :t"),
                    {"t": admin.tenant_id},
                )
                assert [row[0] for row in users] == [kept]  # compared, not left out
        finally:
            await rebuilt.close()
    finally:
        await drop_database(services.database_url, rebuilt_url)
