"""Every stored sample event, of every version, still reads as the current model."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from infra.kafka.codec import decode_raw, decode_stored
from schemas import jobs
from schemas.envelope import Actor, RawEnvelope
from schemas.ids import derived_id, uuid7
from schemas.versions import MODELS, current_version, follow_up, upcast

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "events"
FILES = sorted(SAMPLES.glob("*.json"))


def test_every_event_type_has_a_sample_of_its_current_version() -> None:
    names = {f.name for f in FILES}
    for event_type in MODELS:
        assert f"{event_type}.v{current_version(event_type)}.json" in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_upcasts_to_the_current_model(path: Path) -> None:
    raw = path.read_bytes()
    stored = decode_stored(raw)
    assert f".v{stored.version}." in path.name  # the sample is what it claims to be
    event = decode_raw(raw)
    assert event.version == current_version(event.type)
    MODELS[event.type].model_validate(event.payload)


def test_succeeded_v1_has_no_answer_after_upcasting() -> None:
    event = decode_raw((SAMPLES / "ai.job.succeeded.v1.json").read_bytes())
    done = jobs.JobSucceeded.model_validate(event.payload)
    assert done.text is None and done.cost_usd is None
    assert done.usage.output_tokens == 4


def test_succeeded_v2_keeps_its_answer() -> None:
    event = decode_raw((SAMPLES / "ai.job.succeeded.v2.json").read_bytes())
    done = jobs.JobSucceeded.model_validate(event.payload)
    assert done.text == "reply to: hi"
    assert done.cost_usd == Decimal("0.00000700")


def test_an_unknown_old_version_is_refused() -> None:
    sample = json.loads((SAMPLES / "ai.job.succeeded.v1.json").read_text())
    sample["version"] = 0
    with pytest.raises(ValueError, match="no upcaster"):
        upcast(decode_stored(json.dumps(sample).encode()))


def _request() -> RawEnvelope:
    return RawEnvelope(
        type=jobs.JOB_REQUESTED, tenant_id=uuid.uuid4(), actor=Actor(kind="api_key", id="k"),
        correlation_id=uuid.uuid4(), payload={},
    )  # fmt: skip


def test_a_follow_up_is_derived_from_its_cause_and_stamped_with_its_version() -> None:
    cause, actor = _request(), Actor(kind="system", id="model-calls")
    done = jobs.JobSucceeded(job_id=uuid7(), provider="p", model="m", usage=jobs.TokenUsage())
    event = follow_up(cause, jobs.JOB_SUCCEEDED, done, "succeeded", actor)
    assert event.id == derived_id(cause.id, "succeeded")
    assert event.id == follow_up(cause, jobs.JOB_SUCCEEDED, done, "succeeded", actor).id
    assert event.version == jobs.JobSucceeded.SCHEMA_VERSION
    assert (event.tenant_id, event.correlation_id) == (cause.tenant_id, cause.correlation_id)
    assert (event.causation_id, event.actor) == (cause.id, actor)


def test_a_follow_up_can_start_a_correlation_of_its_own() -> None:
    cause, job, tenant = _request(), uuid7(), uuid.uuid4()
    started = jobs.JobStarted(job_id=job, provider="p", model="m")
    event = follow_up(cause, jobs.JOB_STARTED, started, "rule:1:request",
                      Actor(kind="system", id="webhook-router"),
                      correlation_id=job, tenant_id=tenant)  # fmt: skip
    assert event.id == derived_id(cause.id, "rule:1:request")  # the same id either way
    assert (event.correlation_id, event.tenant_id, event.causation_id) == (job, tenant, cause.id)
