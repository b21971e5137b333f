"""Cheapest fit: `model: "auto"` and named routes pick a model per request by rules a
tenant can read; the choice is on the job, in usage and on a metric; a dry run explains it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.groups.batch.lines import parse_input
from infra.db.engine import Database
from infra.kafka.codec import decode_raw
from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from infra.pricing import PriceTable
from infra.routing.catalog import ModelCatalog
from infra.routing.config import load_routing
from infra.routing.tiers import DEFAULT_AUTO, Needs, choose, needs_of
from schemas.jobs import ChatJob
from tests.conftest import Running, TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import eventually, unique
from tests.kafka_tools import read_topic
from tests.test_jobs_http import wait_finished

ROUTING = """
[models."tier-cheap"]
price = {{ input = "0.10", output = "0.40" }}
deployments = [{{ provider = "local", model = "local-echo" }}]

[models."tier-mid"]
price = {{ input = "1.00", output = "4.00" }}
deployments = [{{ provider = "local", model = "local-echo" }}]

[models."tier-strong"]
price = {{ input = "10.00", output = "40.00" }}
deployments = [{{ provider = "local", model = "local-echo" }}]

[routes.auto]
description = "cheap for short, easy text; mid for tools, JSON and longer; strong for the rest"

[[routes.auto.tiers]]
model = "tier-cheap"
supports = []
max_prompt_tokens = 200
max_effort = "low"

[[routes.auto.tiers]]
model = "tier-mid"
supports = ["tools", "json_schema"]
max_prompt_tokens = 2000
max_effort = "medium"

[[routes.auto.tiers]]
model = "tier-strong"
supports = ["tools", "json_schema", "images"]

[routes."support-bot"]
tiers = [{{ model = "tier-cheap", supports = ["tools"] }}]

[models."judge-fake"]
price = {{ input = "0.10", output = "0.40" }}
deployments = [{{ provider = "openai", model = "gpt-fake", base_url = "{v1}" }}]

[models."judge-slow"]
price = {{ input = "0.10", output = "0.40" }}
deployments = [{{ provider = "openai", model = "gpt-fake@delay=5000", base_url = "{v1}" }}]

[routes.thoughtful]
tiers = [{{ model = "tier-cheap", max_effort = "low" }}, {{ model = "tier-strong" }}]
classifier = {{ model = "judge-fake", timeout_s = 5 }}

[routes.hasty]
tiers = [{{ model = "tier-cheap", max_effort = "low" }}, {{ model = "tier-strong" }}]
classifier = {{ model = "judge-slow", timeout_s = 0.3 }}
"""

PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg"
    "YGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
)


def chat(text: str, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def image_chat(model: str = "auto") -> dict[str, Any]:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]
    return {"model": model, "messages": [{"role": "user", "content": content}]}


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object"}},
}


@pytest.fixture(scope="module")
def routing_file(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routing.toml"
    path.write_text(ROUTING.format(v1=fake_llm.openai_base_url))
    return path


@pytest.fixture(scope="module")
def routed(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
    routing_file: Path,
) -> Iterator[tuple[Running, str]]:
    """An ingress (serving /metrics) and a model-calls worker with the routes above."""
    platform, settings = new_platform(services, fake_llm, tmp_path_factory.mktemp("logs"))
    platform.env["AYUSH_ROUTING_FILE"] = str(routing_file)
    port = free_port()
    try:
        platform.start_ingress_with({"AYUSH_METRICS_PORT": str(port)})
        platform.start_worker("model-calls")
        yield Running(platform, settings), f"http://127.0.0.1:{port}/metrics"
    finally:
        platform.stop()


@pytest.fixture
async def http(routed: tuple[Running, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=routed[0].url, timeout=30) as client:
        yield client


@pytest.fixture
async def key(db: Database) -> TenantKey:
    return await make_tenant(db)


# the rules, as documented --------------------------------------------------------------
def _route(name: str = "auto") -> Any:
    return load_routing(_write(ROUTING.format(v1="http://127.0.0.1:9/v1"))).routes[name]


def _write(text: str) -> Path:
    path = Path(f"/tmp/routing-{uuid.uuid4().hex}.toml")
    path.write_text(text)
    return path


def _job(text: str = "hi", **extra: Any) -> ChatJob:
    return ChatJob(model="auto", messages=[{"role": "user", "content": text}], **extra)


@pytest.mark.parametrize(
    ("job", "model", "rule"),
    [
        (_job("hello there"), "tier-cheap", "cheapest"),
        (_job("word " * 400), "tier-mid", "prompt_tokens>200"),
        (_job("word " * 3000), "tier-strong", "prompt_tokens>2000"),
        (_job(tools=[{"name": "lookup"}]), "tier-mid", "tools"),
        (_job(response_format=SCHEMA), "tier-mid", "json_schema"),
        (_job(reasoning_effort="medium"), "tier-mid", "effort=medium"),
        (_job(reasoning_effort="high"), "tier-strong", "effort=high"),
        (_job(metadata={"difficulty": "hard"}), "tier-strong", "effort=high"),
        (_job(metadata={"difficulty": "easy"}), "tier-cheap", "cheapest"),
    ],
)
def test_each_rule_picks_its_tier(job: ChatJob, model: str, rule: str) -> None:
    choice = choose(_route(), needs_of(job))
    assert (choice.model, choice.rule) == (model, rule)


def test_images_go_to_the_first_tier_that_sees_them() -> None:
    job = ChatJob(
        model="auto",
        messages=[{"role": "user", "content": "x", "parts": [{"type": "image", "url": PIXEL}]}],
    )
    choice = choose(_route(), needs_of(job))
    assert (choice.model, choice.tier, choice.rule) == ("tier-strong", 2, "images")
    assert [why for _, why in choice.considered] == ["images", "images", None]


def test_default_auto_route_without_a_file_goes_mini_4o_o3() -> None:
    routes = load_routing(None).routes
    assert [t.model for t in routes["auto"].tiers] == ["gpt-4o-mini", "gpt-4o", "o3"]
    assert routes["auto"] == DEFAULT_AUTO
    assert choose(DEFAULT_AUTO, Needs(prompt_tokens=10)).model == "gpt-4o-mini"
    assert choose(DEFAULT_AUTO, Needs(prompt_tokens=9000)).rule == "prompt_tokens>8000"
    assert choose(DEFAULT_AUTO, Needs(10, effort="high")).model == "o3"
    # A file with routes of its own still has the default `auto` unless it names one.
    named = load_routing(_write('[routes.x]\ntiers = [{ model = "gpt-4o" }]\n')).routes
    assert set(named) == {"x", "auto"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[routes.r1]\ntiers = [{ model = "no-such-model" }]', "route 'r1' tier 1"),
        ("[routes.r2]\ntiers = []", "route 'r2' needs `tiers`"),
        ('[routes.r3]\ntiers = [{ model = "gpt-4o", supports = ["telepathy"] }]', "route 'r3'"),
        ('[routes.r4]\ntiers = [{ model = "gpt-4o", max_effort = "extreme" }]', "route 'r4'"),
        ('[routes.r5]\ntiers = [{ model = "gpt-4o", max_prompt_tokens = 0 }]', "route 'r5'"),
        ('[routes.r6]\ntiers = [{ model = "gpt-4o" }]\ncolour = "red"', "route 'r6'"),
        ('[routes.gpt-4o]\ntiers = [{ model = "gpt-4o" }]', "route 'gpt-4o' has the name"),
        (
            '[routes.r7]\ntiers = [{ model = "gpt-4o" }]\nclassifier = { model = "zzz" }',
            "route 'r7': classifier names unknown model",
        ),
    ],
)
def test_a_bad_route_is_refused_at_load_with_its_name(text: str, named: str) -> None:
    path = _write(text)
    with pytest.raises(ValueError, match=str(path)) as raised:
        load_routing(path)
    assert named in str(raised.value)


# the choice at every door --------------------------------------------------------------
async def _usage_extra(running: Running, job_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        records = await read_topic(running.settings, "usage.recorded")
        mine = [decode_raw(r.value) for r in records]
        found = [e.payload for e in mine if str(e.correlation_id) == job_id]
        return found[0] if found else None

    payload = await eventually(probe, 20, f"usage of job {job_id}")
    return dict(payload["extra"])


async def test_the_choice_is_on_the_job_in_usage_and_on_the_metric(
    http: httpx.AsyncClient, key: TenantKey, routed: tuple[Running, str]
) -> None:
    running, metrics_url = routed
    body = {"kind": "chat", **chat(unique("a long one ") + " word" * 300)}
    # A `route` the body names is replaced by the ingress's own choice.
    body["route"] = {"route": "auto", "model": "tier-cheap", "tier": 0, "rule": "forged"}
    response = await http.post("/v1/jobs", json=body, headers=key.headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job = await wait_finished(http, key, job_id)
    assert job["status"] == "succeeded", job
    assert job["model"] == "tier-mid"
    expected = {"route": "auto", "model": "tier-mid", "tier": 1, "rule": "prompt_tokens>200"}
    assert job["route"] == expected
    assert (await _usage_extra(running, job_id))["route"] == expected
    text = (await http.get(metrics_url)).text
    found = {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ayush_route_choices_total"
    }
    labels = frozenset({"route": "auto", "model": "tier-mid", "rule": "prompt_tokens>200"}.items())
    assert found.get(labels, 0) >= 1, found


async def test_chat_completions_and_responses_take_auto(
    http: httpx.AsyncClient, key: TenantKey
) -> None:
    completion = await http.post(
        "/v1/chat/completions",
        json=chat("hi", tools=[TOOL]),
        headers=key.headers,
    )
    assert completion.status_code == 200, completion.text
    assert completion.json()["model"] == "tier-mid"
    job = await wait_finished(http, key, completion.headers["x-ayush-job-id"])
    assert job["route"]["rule"] == "tools"

    response = await http.post(
        "/v1/responses",
        json={"model": "support-bot", "input": "where is my parcel?"},
        headers=key.headers,
    )
    assert response.status_code == 200, response.text
    job = await wait_finished(http, key, response.headers["x-ayush-job-id"])
    assert job["model"] == "tier-cheap"
    assert job["route"] == {
        "route": "support-bot",
        "model": "tier-cheap",
        "tier": 0,
        "rule": "cheapest",
    }


async def test_auto_with_nothing_that_fits_is_400_naming_why(
    http: httpx.AsyncClient, key: TenantKey
) -> None:
    response = await http.post(
        "/v1/chat/completions", json=image_chat("support-bot"), headers=key.headers
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "no_tier_fits" and error["param"] == "model", error
    assert "support-bot" in error["message"] and "images" in error["message"]
    embed = await http.post(
        "/v1/embeddings", json={"model": "auto", "input": "x"}, headers=key.headers
    )
    assert embed.status_code == 400 and embed.json()["error"]["code"] == "no_tier_fits"


async def test_explain_answers_the_choice_without_running_anything(
    http: httpx.AsyncClient, key: TenantKey
) -> None:
    body = chat("hi", response_format=SCHEMA)
    response = await http.post("/v1/routing/explain", json=body, headers=key.headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["route"], answer["model"], answer["rule"]) == ("auto", "tier-mid", "json_schema")
    assert [t["model"] for t in answer["tiers"]] == ["tier-cheap", "tier-mid"]
    assert [t["passed_over"] for t in answer["tiers"]] == ["json_schema", None]
    assert answer["needs"]["json_schema"] is True
    jobs = await http.get("/v1/jobs", headers=key.headers)
    assert jobs.json()["data"] == []  # nothing was submitted

    refused = await http.post(
        "/v1/routing/explain", json=image_chat("support-bot"), headers=key.headers
    )
    assert refused.status_code == 400 and refused.json()["error"] == "no_tier_fits"
    not_route = await http.post(
        "/v1/routing/explain", json=chat("x", "tier-cheap"), headers=key.headers
    )
    assert not_route.status_code == 404 and not_route.json()["error"] == "route_not_found"


async def test_routes_are_listed_with_their_rules(http: httpx.AsyncClient, key: TenantKey) -> None:
    response = await http.get("/v1/routing/routes", headers=key.headers)
    assert response.status_code == 200, response.text
    routes = {r["name"]: r for r in response.json()["data"]}
    assert set(routes) == {"auto", "support-bot", "thoughtful", "hasty"}
    first = routes["auto"]["tiers"][0]
    assert first == {
        "model": "tier-cheap",
        "supports": [],
        "max_prompt_tokens": 200,
        "max_effort": "low",
    }


async def test_the_classifier_decides_when_no_hint_and_its_failure_leaves_the_rules(
    http: httpx.AsyncClient, key: TenantKey
) -> None:
    """The fake answers "reply to: <the user's text>": a text saying "complex" is read as
    the classifier's verdict; a classifier slower than its timeout is not waited for."""
    cases = [
        ("thoughtful", "a complex question", "tier-strong", "effort=high", "classifier"),
        ("thoughtful", "a simple question", "tier-cheap", "cheapest", "classifier"),
        ("hasty", "a complex question", "tier-cheap", "cheapest", None),
    ]
    for route, text, model, rule, source in cases:
        response = await http.post(
            "/v1/routing/explain", json=chat(text, route), headers=key.headers
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["model"], answer["rule"]) == (model, rule), (route, text, answer)
        assert answer["needs"]["effort_from"] == source
    # A hint of the request's own wins: the classifier is not asked.
    hinted = await http.post(
        "/v1/routing/explain",
        json=chat("a complex question", "thoughtful", reasoning_effort="low"),
        headers=key.headers,
    )
    assert hinted.json()["needs"]["effort_from"] == "reasoning_effort"
    assert hinted.json()["model"] == "tier-cheap"


def test_batch_lines_naming_auto_are_routed_by_the_same_rules() -> None:
    """A batch line is a door too (consumers.groups.batch.lines): `auto` is chosen there
    by the rules (no classifier) and recorded on the line's job."""
    models = ModelCatalog(load_routing(None), PriceTable.load())
    short = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    hard = {**short, "reasoning_effort": "high"}
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
        for cid, body in (("a", short), ("b", hard))
    ]
    data = b"\n".join(json.dumps(x).encode() for x in lines)
    requests, errors = parse_input(
        data,
        endpoint="/v1/chat/completions",
        max_requests=10,
        max_bytes=10_000_000,
        models=models,
    )
    assert errors == []
    assert [(r.job.model, r.job.route and r.job.route.rule) for r in requests] == [
        ("gpt-4o-mini", "cheapest"),
        ("o3", "effort=high"),
    ]
