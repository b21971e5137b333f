"""Users' events sealed with their data keys (envelope encryption) and crypto-shredding:
infra/kafka/sealing.py and infra/data_keys.py, on the real Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from infra.data_keys import DataKeys
from infra.db.engine import Database
from infra.db.sealed import reseal_all
from infra.errors import PermanentError
from infra.kafka.codec import decode_raw, encode
from infra.kafka.sealing import Sealer
from infra.vault import Vault
from schemas import jobs as job_events
from schemas import memory as memory_events
from schemas.envelope import Actor, Envelope
from tests.conftest import make_tenant

ACTOR = Actor(kind="api_key", id="k")


def _sealer(db: Database, setting: str | None = None, cache_s: float = 5.0) -> Sealer:
    vault = Vault.from_setting(setting or Vault.new_key_setting("k1"))
    return Sealer(DataKeys(db, vault, cache_s))


def _remember(tenant_id: uuid.UUID, user: str, text: str) -> Envelope[memory_events.Remember]:
    payload = memory_events.Remember(memory_id=uuid.uuid4(), user_id=user, text=text)
    return Envelope(
        type=memory_events.MEMORY_REMEMBER,
        tenant_id=tenant_id,
        actor=ACTOR,
        correlation_id=uuid.uuid4(),
        payload=payload,
    )


async def _sealed(sealer: Sealer, envelope: Envelope[object]) -> bytes:
    _, value, _ = encode(envelope)
    return await sealer.encode_value(envelope, value)


async def test_a_users_event_is_sealed_and_opens_back(db: Database) -> None:
    tenant = await make_tenant(db)
    sealer = _sealer(db)
    marker = f"marker-{uuid.uuid4()}"
    event = _remember(tenant.tenant_id, "alice", f"my dog is {marker}")
    value = await _sealed(sealer, event)
    assert marker.encode() not in value and b'"sealed"' in value
    stored = orjson.loads(value)
    # The envelope stays readable (routing, audit); only the payload is sealed.
    assert stored["type"] == "memory.remember" and stored["tenant_id"] == str(tenant.tenant_id)
    assert set(stored["payload"]) == {"sealed"}
    opened = await sealer.open_value(value)
    assert opened is not None and decode_raw(opened).payload["text"] == f"my dog is {marker}"


async def test_a_sealed_payload_moved_onto_another_event_does_not_open(db: Database) -> None:
    tenant = await make_tenant(db)
    sealer = _sealer(db)
    value = await _sealed(sealer, _remember(tenant.tenant_id, "alice", "secret"))
    moved = orjson.loads(value)
    moved["id"] = str(uuid.uuid4())
    with pytest.raises(PermanentError, match="does not open"):
        await sealer.open_value(orjson.dumps(moved))


async def test_an_event_without_a_user_stays_in_clear(db: Database) -> None:
    tenant = await make_tenant(db)
    sealer = _sealer(db)
    job = job_events.ChatJob.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "tenant-wide prompt"}]}
    )
    payload = job_events.JobRequested(job_id=uuid.uuid4(), job=job)
    event = Envelope(
        type=job_events.JOB_REQUESTED,
        tenant_id=tenant.tenant_id,
        actor=ACTOR,
        correlation_id=payload.job_id,
        payload=payload,
    )
    _, plain, _ = encode(event)
    assert await sealer.encode_value(event, plain) is plain
    # The same job of a user is sealed.
    users_job = payload.model_copy(update={"job": job.model_copy(update={"user_id": "u"})})
    mine = event.model_copy(update={"payload": users_job})
    assert b"tenant-wide prompt" not in await _sealed(sealer, mine)


async def test_a_destroyed_key_opens_nothing_anywhere(db: Database) -> None:
    tenant = await make_tenant(db)
    setting = Vault.new_key_setting("k1")
    writer, reader = _sealer(db, setting), _sealer(db, setting, cache_s=0)
    value = await _sealed(writer, _remember(tenant.tenant_id, "bob", "forget me"))
    assert await reader.open_value(value) is not None
    assert await writer.keys.destroy(tenant.tenant_id, "bob")
    # The destroying process forgets at once; another once its cache expires (here: 0 s).
    assert await writer.open_value(value) is None
    assert await reader.open_value(value) is None
    assert not await writer.keys.destroy(tenant.tenant_id, "bob")  # idempotent
    # The user's next event gets a new key, which opens.
    again = await _sealed(writer, _remember(tenant.tenant_id, "bob", "new start"))
    assert (
        orjson.loads(again)["payload"]["sealed"]["key"]
        != orjson.loads(value)["payload"]["sealed"]["key"]
    )
    assert await reader.open_value(again) is not None


async def test_concurrent_makers_of_a_users_key_agree(db: Database) -> None:
    tenant = await make_tenant(db)
    setting = Vault.new_key_setting("k1")
    # Several processes (each its own cache) asking at once for a user with no key yet.
    processes = [DataKeys(db, Vault.from_setting(setting)) for _ in range(8)]
    found = await asyncio.gather(
        *(keys.key_for(tenant.tenant_id, "carol") for keys in processes for _ in range(3))
    )
    assert len({key_id for key_id, _ in found}) == 1
    key_id, key = found[0]
    sealed = key.seal(b"hello", b"ctx")
    for keys in processes:
        other = await keys.key(key_id)
        assert other is not None and other.open(sealed, b"ctx") == b"hello"


async def test_users_data_keys_rotate_with_the_key_ring(db: Database) -> None:
    tenant = await make_tenant(db)
    old = Vault.new_key_setting(f"old{uuid.uuid4().hex[:6]}")
    value = await _sealed(_sealer(db, old), _remember(tenant.tenant_id, "dan", "rotate me"))
    rotated = f"{Vault.new_key_setting(f'new{uuid.uuid4().hex[:6]}')},{old}"
    assert await reseal_all(db, Vault.from_setting(rotated)) >= 1
    new_only = Vault.new_key_setting("unused")  # the old key is retired
    fresh = _sealer(db, f"{rotated.split(',')[0]},{new_only}")
    opened = await fresh.open_value(value)
    assert opened is not None and b"rotate me" in opened


async def test_sealing_costs_microseconds_with_a_cached_key(db: Database) -> None:
    tenant = await make_tenant(db)
    sealer = _sealer(db)
    event = _remember(tenant.tenant_id, "erin", "x" * 200)
    value = await _sealed(sealer, event)  # the key is made and cached
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        await _sealed(sealer, event)
    sealed_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        await sealer.open_value(value)
    opened_us = (time.perf_counter() - started) / n * 1e6
    print(f"seal {sealed_us:.1f} us/event, open {opened_us:.1f} us/event")
    assert sealed_us < 500 and opened_us < 500


async def test_a_worker_answers_a_returning_user_under_their_new_key(db: Database) -> None:
    tenant = await make_tenant(db)
    setting = Vault.new_key_setting("k1")
    ingress, worker = _sealer(db, setting), _sealer(db, setting)
    first = await _sealed(ingress, _remember(tenant.tenant_id, "fay", "before"))
    assert await worker.open_value(first) is not None
    await _sealed(worker, _remember(tenant.tenant_id, "fay", "the worker's answer"))  # cached
    assert await ingress.keys.destroy(tenant.tenant_id, "fay")
    # She comes back at once: the ingress makes a new key; the worker reads her event...
    back = await _sealed(ingress, _remember(tenant.tenant_id, "fay", "after"))
    assert await worker.open_value(back) is not None
    # ...and seals what it writes for her with that key, not the destroyed one it had cached.
    answer = await _sealed(worker, _remember(tenant.tenant_id, "fay", "answer after"))
    assert await _sealer(db, setting, cache_s=0).open_value(answer) is not None
