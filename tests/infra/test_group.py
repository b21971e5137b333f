"""A group declared once: what `Group` and `@group.on` give the runner."""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

import consumers.groups
import consumers.projections
from ayush.groups import GROUPS, REPLAY_GROUPS
from infra.kafka.group import Group
from infra.kafka.policies import Batches
from infra.settings import Settings
from schemas import jobs as job_events
from schemas.envelope import Actor, Envelope


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, 0, 0, None, value, None, len(value), 0, [])


def _succeeded(version: int, payload: dict[str, Any]) -> bytes:
    job_id = uuid.uuid4()
    return (
        Envelope[Any](
            type=job_events.JOB_SUCCEEDED,
            version=version,
            tenant_id=uuid.uuid4(),
            actor=Actor(kind="system", id="test"),
            correlation_id=job_id,
            payload={"job_id": str(job_id), **payload},
        )
        .model_dump_json()
        .encode()
    )


V1 = {"provider": "local", "model": "m", "usage": {"input_tokens": 1, "output_tokens": 2}}


async def test_a_handler_gets_the_typed_event_and_its_groups_ports() -> None:
    group: Group[list[Any]] = Group("g", ["t"], lambda s: Batches(7))
    seen: list[Any] = []

    @group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)
    async def handle(event: Envelope[job_events.JobSucceeded], ports: list[Any]) -> None:
        ports.append(event)

    route = group.routes(seen)[job_events.JOB_SUCCEEDED]
    event = route.decode(_record(_succeeded(2, {**V1, "text": "hi", "cost_usd": "0.1"})))
    await route.handle(event)
    assert isinstance(seen[0].payload, job_events.JobSucceeded)
    assert seen[0].payload.text == "hi"
    assert group.policy(Settings()) == Batches(7)


def test_an_older_version_reaches_the_handler_upcast() -> None:
    group: Group[None] = Group("g", ["t"])
    group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)(_nothing)
    decode = group.routes(None)[job_events.JOB_SUCCEEDED].decode
    event = decode(_record(_succeeded(1, V1)))
    assert event.version == 2
    assert event.payload.text is None and event.payload.provider == "local"


def test_a_record_that_does_not_fit_the_model_is_refused_before_the_handler() -> None:
    group: Group[None] = Group("g", ["t"])
    group.on(job_events.JOB_SUCCEEDED, job_events.JobSucceeded)(_nothing)
    decode = group.routes(None)[job_events.JOB_SUCCEEDED].decode
    with pytest.raises((ValidationError, ValueError)):
        decode(_record(_succeeded(2, {"provider": "local"})))
    with pytest.raises((ValidationError, ValueError)):
        decode(_record(b"not json"))


def test_an_event_type_has_one_handler() -> None:
    group: Group[None] = Group("g", ["t"])
    group.on(job_events.JOB_FAILED)(_nothing)
    with pytest.raises(ValueError, match="has a handler already"):
        group.on(job_events.JOB_FAILED)(_nothing)


async def test_periodic_work_runs_with_the_groups_ports() -> None:
    group: Group[list[str]] = Group("g", ["t"])
    ran: list[str] = []

    @group.every(lambda settings: 12.5)
    async def sweep(ports: list[str]) -> None:
        ports.append("swept")

    timer = group.timer(Settings(), ran)
    assert timer is not None and timer.every_s == 12.5
    await timer.run()
    assert ran == ["swept"]


def test_every_declared_group_is_wired_and_every_wired_group_is_declared() -> None:
    declared = set()
    for package in (consumers.groups, consumers.projections):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            loaded = importlib.import_module(module.name)
            declared |= {v.name for v in vars(loaded).values() if isinstance(v, Group)}
    wired = {*GROUPS, *REPLAY_GROUPS}
    assert declared == wired
    assert all(w.group.replay_only for w in REPLAY_GROUPS.values())
    assert not any(w.group.replay_only for w in GROUPS.values())


async def _nothing(event: Any, ports: Any) -> None:
    return None
