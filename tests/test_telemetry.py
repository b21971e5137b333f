"""Traces across HTTP and Kafka, Prometheus series, JSON logs: read from real processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import Running, TenantKey, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Proc, eventually, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import chat, submit, wait_finished


@dataclass
class Observed(Running):
    traces: Path
    worker: Proc
    worker_metrics: str
    ingress_metrics: str


@pytest.fixture(scope="module")
def observed(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    """An ingress and a worker that write their spans to files and serve /metrics."""
    logs = tmp_path_factory.mktemp("observed")
    platform, settings = new_platform(services, fake_llm, logs)
    # Export every 50 ms instead of every 5 s, so spans reach the files quickly.
    platform.env["OTEL_BSP_SCHEDULE_DELAY"] = "50"
    port, ingress_port = free_port(), free_port()
    try:
        platform.start_ingress_with(
            {
                "AYUSH_TRACE_FILE": str(logs / "ingress.spans"),
                "AYUSH_METRICS_PORT": str(ingress_port),
            }
        )
        worker = platform.start_worker(
            "model-calls",
            extra_env={
                "AYUSH_TRACE_FILE": str(logs / "worker.spans"),
                "AYUSH_METRICS_PORT": str(port),
                "AYUSH_LOG_EVENTS": "true",
            },
        )
        yield Observed(
            platform, settings, logs, worker,
            f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{ingress_port}/metrics",
        )  # fmt: skip
    finally:
        platform.stop()


@pytest.fixture
async def http(observed: Observed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=observed.platform.url, timeout=30) as client:
        yield client


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_one_trace_follows_a_job_from_http_to_usage(
    observed: Observed, http: httpx.AsyncClient, tenant: TenantKey
) -> None:
    trace_id = unique("").ljust(32, "0")[:32]
    traceparent = f"00-{trace_id}-{'1' * 16}-01"
    response = await http.post(
        "/v1/jobs",
        json=chat("trace me", model="gpt-fake"),
        headers={**tenant.headers, "traceparent": traceparent},
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    await wait_finished(http, tenant, job_id)
    prefix = observed.settings.topic_prefix

    def names_in(file: str) -> set[str]:
        return {
            s["name"]
            for s in spans(observed.traces / file)
            if s["context"]["trace_id"] == f"0x{trace_id}"
        }

    wanted_ingress = {"POST /v1/jobs", f"publish {prefix}ai.job.requested"}
    wanted_worker = {
        f"process {prefix}ai.job.requested",
        "chat gpt-fake",
        f"publish {prefix}ai.job.lifecycle",
        f"publish {prefix}usage.recorded",
    }

    async def all_there() -> bool:
        return wanted_ingress <= names_in("ingress.spans") and wanted_worker <= names_in(
            "worker.spans"
        )

    await eventually(all_there, 20, "the job's spans in both processes")
    servers = [
        s
        for s in spans(observed.traces / "ingress.spans")
        if s["context"]["trace_id"] == f"0x{trace_id}" and s["kind"] == "SpanKind.SERVER"
    ]
    assert [s["name"] for s in servers] == ["POST /v1/jobs"]
    consumed = [
        s
        for s in spans(observed.traces / "worker.spans")
        if s["name"] == f"process {prefix}ai.job.requested"
        and s["attributes"]["ayush.job_id"] == job_id
    ]
    assert len(consumed) == 1 and consumed[0]["context"]["trace_id"] == f"0x{trace_id}"
    assert consumed[0]["attributes"]["ayush.outcome"] == "ok"

    # The follow-up event carries the same trace on to the usage consumers.
    records = await read_topic(observed.settings, "usage.recorded")
    mine = [r for r in records if job_id.encode() == r.key]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert headers["traceparent"].decode().split("-")[1] == trace_id

    # Log lines of the worker carry trace, job, tenant and event ids as JSON.
    lines = [json.loads(x) for x in observed.worker.log.read_text().splitlines() if x[:1] == "{"]
    handled = [x for x in lines if x.get("job_id") == job_id]
    assert handled and handled[0]["trace_id"] == trace_id
    assert handled[0]["tenant_id"] == str(tenant.tenant_id)
    assert handled[0]["event_id"] and handled[0]["event_type"] == "ai.job.requested"
    assert "trace me" not in observed.worker.log.read_text()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_show_requests_lag_latency_and_tokens(
    observed: Observed, http: httpx.AsyncClient, tenant: TenantKey
) -> None:
    prefix = observed.settings.topic_prefix
    group = f"{prefix}model-calls"
    model = f"gpt-fake@tag={unique()}"
    # Series are labelled by the price row that priced the model, not by its name.
    label = "gpt-fake*"
    before = samples((await http.get(observed.ingress_metrics)).text)
    worker_before = await _worker_samples(http, observed)
    jobs = [await submit(http, tenant, chat(f"count {n} tokens", model=model)) for n in range(3)]
    finished = [await wait_finished(http, tenant, job_id) for job_id in jobs]
    output_tokens = sum(int(j["usage"]["output_tokens"]) for j in finished)  # type: ignore[index]
    input_tokens = sum(int(j["usage"]["input_tokens"]) for j in finished)  # type: ignore[index]

    ingress = samples((await http.get(observed.ingress_metrics)).text)
    posted = ("ayush_http_requests_total", {"method": "POST", "route": "/v1/jobs", "status": "202"})
    assert value(ingress, posted[0], **posted[1]) - value(before, posted[0], **posted[1]) == 3
    published = {"topic": f"{prefix}ai.job.requested", "outcome": "ok"}
    assert (
        value(ingress, "ayush_publish_seconds_count", **published)
        - value(before, "ayush_publish_seconds_count", **published)
        == 3
    )
    assert value(ingress, "ayush_sse_streams_open") == 0

    async def worker_caught_up() -> Samples | None:
        found = samples((await http.get(observed.worker_metrics)).text)
        lags = {
            dict(labels)["partition"]: v
            for (name, labels), v in found.items()
            if name == "ayush_consumer_lag" and dict(labels)["group"] == group
        }
        # Every partition that has seen events is reported, and none lags behind.
        return found if lags and all(v == 0 for v in lags.values()) else None

    worker = await eventually(worker_caught_up, 20, "consumer lag 0 on every partition")
    lag_topics = {
        dict(labels)["topic"] for (name, labels) in worker if name == "ayush_consumer_lag"
    }
    assert lag_topics == {f"{prefix}ai.job.requested"}
    handled = {"group": group, "event_type": "ai.job.requested", "outcome": "ok"}
    assert value(worker, "ayush_handler_seconds_count", **handled) >= 3
    call = {"provider": "openai", "model": label}

    def grew(name: str, **labels: str) -> float:
        return value(worker, name, **labels) - value(worker_before, name, **labels)

    assert grew("ayush_provider_seconds_count", **call, outcome="ok") == 3
    assert grew("ayush_tokens_total", **call, direction="output") == output_tokens
    assert grew("ayush_tokens_total", **call, direction="input") == input_tokens
    # gpt-fake costs $1 / $2 per million input / output tokens (tests/fakes/prices.toml).
    expected = (Decimal(input_tokens) * 1 + Decimal(output_tokens) * 2) / 1_000_000
    assert grew("ayush_cost_usd_total", **call) == pytest.approx(float(expected))
    assert value(worker, "ayush_events_in_flight", group=group) == 0


async def _worker_samples(http: httpx.AsyncClient, observed: Observed) -> Samples:
    async def probe() -> Samples | None:
        try:
            return samples((await http.get(observed.worker_metrics)).text)
        except httpx.TransportError:
            return None

    return await eventually(probe, 20, "the worker's /metrics")


async def test_model_names_from_requests_never_become_series_of_their_own(
    observed: Observed, http: httpx.AsyncClient, tenant: TenantKey
) -> None:
    tag = uuid.uuid4().hex
    refused = [f"local-{tag}", f"openai/{tag}", f"gpt-{tag}", f"mystery-{tag}"]
    for model in refused:
        gateway = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        for path, body in (("/v1/jobs", chat("x", model=model)), ("/v1/chat/completions", gateway)):
            response = await http.post(path, json=body, headers=tenant.headers)
            assert response.status_code in (400, 404, 422), (model, path, response.text)
            assert model in response.text
    # One that gets past the ingress (a priced `*` row) is counted under its row's name.
    job = await submit(http, tenant, chat("counted", model=f"gpt-fake@tag={tag}"))
    assert (await wait_finished(http, tenant, job))["status"] == "succeeded"
    worker = await _worker_samples(http, observed)
    call = {"provider": "openai", "model": "gpt-fake*", "outcome": "ok"}
    assert value(worker, "ayush_provider_seconds_count", **call) >= 1
    ingress = samples((await http.get(observed.ingress_metrics)).text)
    for found in (worker, ingress):
        leaked = [(name, dict(labels)) for name, labels in found if any(
            tag in v for _, v in labels
        )]  # fmt: skip
        assert leaked == []
