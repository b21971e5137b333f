"""POST /v1/actions through the integrations group to fake vendors, counting their calls."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from infra.db.engine import Database
from infra.db.sealed import reseal_all
from infra.kafka.codec import decode_raw
from infra.kafka.publisher import Publisher
from infra.vault import Vault
from tests.conftest import TenantKey
from tests.harness import eventually, sse_events, unique
from tests.integrations.conftest import Integrations
from tests.integrations.helpers import act, connect
from tests.kafka_tools import read_topic
from tests.test_jobs_http import wait_finished

# The package's first test also starts an ingress and three workers: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)


async def redeliver(settings: object, job_id: str, times: int = 1) -> uuid.UUID:
    """Publish the action's request record again, byte for byte, as Kafka might."""
    records = await read_topic(settings, "integration.action.requested")  # type: ignore[arg-type]
    mine = [r for r in records if str(decode_raw(r.value).correlation_id) == job_id]
    assert mine, "the request was published"
    publisher = Publisher(settings)  # type: ignore[arg-type]
    await publisher.start()
    try:
        for _ in range(times):
            await publisher.send(
                mine[0].topic, mine[0].value, key=mine[0].key, headers=list(mine[0].headers)
            )
    finally:
        await publisher.stop()
    return decode_raw(mine[0].value).id


async def outcome_announcements(settings: object, job_id: str) -> int:
    records = await read_topic(settings, "ai.job.lifecycle")  # type: ignore[arg-type]
    return sum(
        1
        for r in records
        if str(decode_raw(r.value).correlation_id) == job_id
        and decode_raw(r.value).type.startswith("integration.action.")
    )


async def test_slack_message_posted_once_under_redelivery(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("SLOW")  # the call takes a while: redeliveries arrive mid-call
    job_id = await act(api, tenant, slack, "post_message", {"channel": channel, "text": "hi"})
    await redeliver(integrations.settings, job_id, times=2)
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "action" and job["model"] == "slack.post_message"
    assert json.loads(job["result"])["channel"] == channel

    # Redelivered after success: re-announced under the same id, never posted again.
    await redeliver(integrations.settings, job_id)

    async def reannounced() -> bool:
        return await outcome_announcements(integrations.settings, job_id) >= 2

    await eventually(reannounced, what="the redelivered event to be handled")
    assert len(integrations.vendors.matching("slack", channel)) == 1

    events = sse_events((await api.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and kinds[-2:] == ["result", "done"]


async def test_rate_limit_answer_is_waited_out(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("RATE")
    job_id = await act(api, tenant, slack, "post_message", {"channel": channel, "text": "x"})
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "succeeded", job
    calls = integrations.vendors.matching("slack", channel)
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 0.9  # Retry-After: 1 was honoured


async def test_refused_credentials_and_missing_repo_fail_at_once(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    bad_slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-bad"})
    channel = unique("C")
    slack_job = await act(api, tenant, bad_slack, "post_message", {"channel": channel, "text": "x"})
    github = await connect(api, tenant, "github", {"token": "ghp_test"})
    owner = unique("own")
    github_job = await act(
        api, tenant, github, "create_issue", {"owner": owner, "repo": "missing", "title": "t"}
    )
    failed_slack = await wait_finished(api, tenant, slack_job)
    failed_github = await wait_finished(api, tenant, github_job)
    assert failed_slack["status"] == "failed" and "invalid_auth" in failed_slack["error"]
    assert failed_github["status"] == "failed" and "404" in failed_github["error"]
    assert len(integrations.vendors.matching("slack", channel)) == 1
    assert len(integrations.vendors.matching("github", owner)) == 1


async def test_every_connector_reaches_its_vendor(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    mark = unique("m")
    vendors = integrations.vendors
    cases: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
        ("discord", {"webhook_id": "123", "webhook_token": "tok"}, "send_message",
         {"content": f"hello {mark}"}),
        ("telegram", {"bot_token": "123:abc"}, "send_message",
         {"chat_id": 5, "text": f"hello {mark}"}),
        ("github", {"token": "ghp_x"}, "create_issue",
         {"owner": mark, "repo": "r", "title": "Bug", "body": "b"}),
        ("github", {"token": "ghp_x"}, "create_comment",
         {"owner": mark, "repo": "r", "issue_number": 12, "body": "c"}),
        ("notion", {"token": "secret_n"}, "create_page",
         {"parent_page_id": "p1", "title": f"Notes {mark}", "content": "c"}),
        ("http", {"headers": {"Authorization": "Bearer h"}, "base_url": vendors.url}, "request",
         {"method": "POST", "url": f"{vendors.url}/http/{mark}", "json": {"a": 1}}),
        ("email", {"host": "127.0.0.1", "port": integrations.smtp_port, "starttls": False,
                   "from_address": "bot@ayush.test"}, "send_email",
         {"to": ["ops@example.test"], "subject": f"Hi {mark}", "text": "body"}),
    ]  # fmt: skip
    jobs = []
    for connector, credentials, action, params in cases:
        connection = await connect(api, tenant, connector, credentials)
        jobs.append(await act(api, tenant, connection, action, params))
    for job_id in jobs:
        job = await wait_finished(api, tenant, job_id)
        assert job["status"] == "succeeded", job
    assert len(vendors.matching("discord", mark)) == 1
    assert vendors.matching("discord", mark)[0].path == "/discord/webhooks/123/tok?wait=true"
    assert len(vendors.matching("telegram", mark)) == 1
    assert vendors.matching("telegram", mark)[0].path == "/telegram/bot123:abc/sendMessage"
    github = vendors.matching("github", mark)
    assert sorted(c.path for c in github) == [
        f"/github/repos/{mark}/r/issues",
        f"/github/repos/{mark}/r/issues/12/comments",
    ]
    assert github[0].headers["Authorization"] == "Bearer ghp_x"
    notion = vendors.matching("notion", mark)
    assert len(notion) == 1 and notion[0].headers["Notion-Version"] == "2022-06-28"
    generic = vendors.matching("http", mark)
    assert len(generic) == 1 and generic[0].body == {"a": 1}
    assert generic[0].headers["Authorization"] == "Bearer h"
    assert "Idempotency-Key" in generic[0].headers
    mails = [m for m in integrations.smtp.messages if mark.encode() in m[1]]
    assert len(mails) == 1 and mails[0][0] == ["ops@example.test"]


async def test_usage_is_recorded_for_integration_calls(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    telegram = await connect(api, tenant, "telegram", {"bot_token": "1:t"})
    job_id = await act(api, tenant, telegram, "send_message", {"chat_id": 1, "text": "u"})
    assert (await wait_finished(api, tenant, job_id))["status"] == "succeeded"

    async def usage() -> list[dict[str, object]]:
        records = await read_topic(integrations.settings, "usage.recorded")
        return [
            decode_raw(r.value).payload
            for r in records
            if str(decode_raw(r.value).correlation_id) == job_id
        ]

    found = await eventually(usage, what="usage.recorded")
    assert found[0]["kind"] == "integration_call" and found[0]["provider"] == "telegram"


async def test_call_cut_off_by_a_dead_worker_is_not_repeated(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("SLOW")
    job_id = await act(api, tenant, slack, "post_message", {"channel": channel, "text": "once"})

    async def calling() -> bool:
        return bool(integrations.vendors.matching("slack", channel))

    await eventually(calling, what="the vendor call to start")
    worker = next(p for p in integrations.platform.procs if p.name == "integrations" and p.alive())
    worker.kill()  # mid-call: the vendor may or may not have posted
    integrations.start_integrations_worker()

    job = await wait_finished(api, tenant, job_id, timeout_s=60)
    assert job["status"] == "failed" and "outcome is unknown" in job["error"]
    assert len(integrations.vendors.matching("slack", channel)) == 1


async def test_credentials_never_readable(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    token = "xoxb-" + unique("topsecret")
    created = await api.post(
        "/v1/connections",
        json={"connector": "slack", "credentials": {"bot_token": token}},
        headers=tenant.headers,
    )
    assert created.status_code == 201 and token not in created.text
    channel = unique("C")
    job_id = await act(api, tenant, created.json()["id"], "post_message",
                       {"channel": channel, "text": "t"})  # fmt: skip
    assert (await wait_finished(api, tenant, job_id))["status"] == "succeeded"
    # The vendor did get it: the secret was really used.
    assert (
        integrations.vendors.matching("slack", channel)[0].headers["Authorization"].endswith(token)
    )

    async with db.session() as session:  # a pg_dump-like read of the whole table
        dump = "\n".join(
            str(row) for row in await session.execute(text("SELECT t::text FROM connections t"))
        )
    assert created.json()["id"] in dump and token not in dump
    job = (await api.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).text
    stream = (await api.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)).text
    assert token not in job and token not in stream
    records = await read_topic(integrations.settings, "integration.action.requested")
    assert all(token.encode() not in (r.value or b"") for r in records)
    # Telegram carries its token in the URL path: not in any log either.
    bot_token = "987654:" + unique("tg")
    telegram = await connect(api, tenant, "telegram", {"bot_token": bot_token})
    sent = await act(api, tenant, telegram, "send_message", {"chat_id": 1, "text": "x"})
    assert (await wait_finished(api, tenant, sent))["status"] == "succeeded"
    assert integrations.vendors.matching("telegram", bot_token)
    for proc in integrations.platform.procs:
        log = proc.log.read_text(errors="replace")
        assert token not in log and bot_token not in log

    refused = await api.post(
        "/v1/connections",
        json={"connector": "slack", "credentials": {"bot_token": 42, "extra": token}},
        headers=tenant.headers,
    )
    assert refused.status_code == 422 and token not in refused.text


async def test_connectors_catalogue_and_bad_requests(
    api: httpx.AsyncClient, tenant: TenantKey
) -> None:
    catalogue = (await api.get("/v1/connectors", headers=tenant.headers)).json()["connectors"]
    by_name = {c["name"]: c for c in catalogue}
    known = {"slack", "discord", "telegram", "github", "notion", "email", "http", "mcp"}
    assert set(by_name) == known
    post = next(a for a in by_name["slack"]["actions"] if a["name"] == "post_message")
    assert set(post["params_schema"]["required"]) == {"channel", "text"}

    unknown = await api.post("/v1/connections", json={"connector": "fax", "credentials": {}},
                             headers=tenant.headers)  # fmt: skip
    assert unknown.status_code == 422 and unknown.json()["details"][0]["field"] == "connector"
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    cases = [
        ({"connection_id": slack, "action": "fly", "params": {}}, "action"),
        ({"connection_id": slack, "action": "post_message", "params": {"text": "x"}},
         "params.channel"),
        ({"connection_id": str(uuid.uuid4()), "action": "post_message", "params": {}},
         "connection_id"),
    ]  # fmt: skip
    for body, field in cases:
        response = await api.post("/v1/actions", json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["field"] == field
    assert (await api.get("/v1/connectors")).status_code == 401


async def test_key_rotation_reseals_and_the_action_still_runs(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    current = integrations.platform.env["AYUSH_ENCRYPTION_KEYS"]
    old_id = current.split(":")[0]
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-rotate"})
    newer = Vault.new_key_setting("rotated")
    assert await reseal_all(db, Vault.from_setting(f"{newer},{current}")) >= 1

    async def key_of(connection_id: str) -> str:
        async with db.session() as session:
            row = await session.execute(
                text("SELECT key_id FROM connections WHERE id = :id"), {"id": connection_id}
            )
            return str(row.scalar_one())

    assert await key_of(slack) == "rotated"
    # Rotate back so the running workers, which only know the old key, can open it again.
    assert await reseal_all(db, Vault.from_setting(f"{current},{newer}")) >= 1
    assert await key_of(slack) == old_id
    channel = unique("C")
    job_id = await act(api, tenant, slack, "post_message", {"channel": channel, "text": "r"})
    assert (await wait_finished(api, tenant, job_id))["status"] == "succeeded"
    assert (
        integrations.vendors.matching("slack", channel)[0]
        .headers["Authorization"]
        .endswith("xoxb-rotate")
    )


async def test_vendor_answer_that_is_not_json_fails_the_job(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("HTML")
    job_id = await act(api, tenant, slack, "post_message", {"channel": channel, "text": "x"})
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "failed", job
    assert "slack answered 200 with a body that is not a JSON object" in job["error"]
    async with db.session() as session:
        attempt = await session.execute(
            text("SELECT status FROM action_attempts WHERE job_id = :id"), {"id": job_id}
        )
    assert attempt.scalar_one() == "failed"
    assert len(integrations.vendors.matching("slack", channel)) == 1  # not retried


async def test_email_subject_with_a_line_break_is_refused(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    email = await connect(api, tenant, "email", {
        "host": "127.0.0.1", "port": integrations.smtp_port, "starttls": False,
        "from_address": "bot@ayush.test",
    })  # fmt: skip
    refused = await api.post(
        "/v1/actions",
        json={"connection_id": email, "action": "send_email", "params": {
            "to": ["ops@example.test"], "subject": "Hi\nBcc: all@example.test", "text": "x",
        }},
        headers=tenant.headers,
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"] == "params.subject"


async def test_http_connection_secret_goes_only_to_its_origin(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    vendors = integrations.vendors
    secret = {"headers": {"Authorization": "Bearer origin-bound"}}
    unbound = await api.post(
        "/v1/connections", json={"connector": "http", "credentials": secret},
        headers=tenant.headers,
    )  # fmt: skip
    assert unbound.status_code == 422, unbound.text
    assert "base_url or allowed_hosts" in unbound.json()["message"]
    http = await connect(api, tenant, "http", {**secret, "base_url": f"{vendors.url}/http"})
    mark = unique("elsewhere")
    # The same fake server under another name: another origin, as an attacker's would be.
    job_id = await act(api, tenant, http, "request", {
        "method": "POST", "url": f"http://localhost:{vendors.port}/http/{mark}", "json": {},
    })  # fmt: skip
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "failed" and "is not an origin of this connection" in job["error"]
    assert vendors.matching("http", mark) == []


async def test_unforeseen_error_in_a_connector_fails_the_job(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    telegram = await connect(api, tenant, "telegram", {"bot_token": "123:abc"})
    text_ = unique("ODD")
    job_id = await act(api, tenant, telegram, "send_message", {"chat_id": 5, "text": text_})
    job = await wait_finished(api, tenant, job_id)
    assert job["status"] == "failed", job
    assert job["error"].startswith("telegram.send_message failed: AttributeError")
    async with db.session() as session:
        attempt = await session.execute(
            text("SELECT status FROM action_attempts WHERE job_id = :id"), {"id": job_id}
        )
    assert attempt.scalar_one() == "failed"


async def connector_actions(integrations: Integrations) -> dict[tuple[str, str, str], float]:
    """ayush_connector_actions_total of the integrations worker, by connector, action, outcome."""
    async with httpx.AsyncClient(timeout=10) as http:
        exposition = (await http.get(integrations.metrics_url)).text
    return {
        (s.labels["connector"], s.labels["action"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == "ayush_connector_actions_total"
    }


async def test_connector_outcomes_are_counted_for_operators(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    """The series the operators' connector error-rate alert reads (deploy/prometheus)."""
    before = await connector_actions(integrations)
    good = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    bad = await connect(api, tenant, "slack", {"bot_token": "xoxb-bad"})
    jobs = [
        await act(api, tenant, slack, "post_message", {"channel": unique("M"), "text": "x"})
        for slack in (good, bad)
    ]
    for job_id in jobs:
        await wait_finished(api, tenant, job_id)
    # A redelivery of a finished action is not counted again.
    await redeliver(integrations.settings, jobs[0])

    async def reannounced() -> bool:
        return await outcome_announcements(integrations.settings, jobs[0]) >= 2

    await eventually(reannounced, what="the redelivered event to be handled")
    after = await connector_actions(integrations)

    def added(outcome: str) -> float:
        key = ("slack", "post_message", outcome)
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert (added("ok"), added("error")) == (1.0, 1.0)
