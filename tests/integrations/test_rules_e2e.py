"""Rules: GitHub issues.opened -> AI job "summarize" -> Slack message, end to end."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import text

from infra.db.engine import Database
from schemas.ids import derived_id
from tests.conftest import TenantKey, make_tenant
from tests.harness import eventually, unique
from tests.integrations.conftest import Integrations
from tests.integrations.helpers import connect, redeliver_and_wait, vendor_calls
from tests.integrations.test_webhooks_http import endpoint, github_headers

# The package's first test also starts an ingress and three workers: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)

NUMBERED = "#{{ payload.issue.number }} {{ event_type }}"


async def rule(api: httpx.AsyncClient, tenant: TenantKey, body: dict[str, object]) -> str:
    response = await api.post("/v1/rules", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_github_issue_summary_is_posted_to_slack(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    secret = unique("gh-")
    hook = await endpoint(api, tenant, "github", secret)
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    channel = unique("C")
    rule_id = await rule(api, tenant, {
        "endpoint_id": hook["id"],
        "event_type": "issues.opened",
        "filter": {"action": "opened", "repository.name": "app"},
        "job": {"model": "local-echo", "prompt": "Summarize: {{ payload.issue.title }}"},
        "action": {"connection_id": slack, "action": "post_message",
                   "params": {"channel": channel, "text": "{{ result }}"}},
    })  # fmt: skip
    title = unique("Crash on start ")
    opened = json.dumps(
        {"action": "opened", "issue": {"title": title, "number": 4}, "repository": {"name": "app"}}
    ).encode()
    delivery = str(uuid.uuid4())
    response = await api.post(
        f"/hooks/{hook['id']}", content=opened, headers=github_headers(secret, opened, delivery)
    )
    assert response.status_code == 202

    calls = await vendor_calls(integrations, "slack", channel)
    # local-echo answers with the prompt: the summary job saw the issue's title.
    assert calls[0].body["text"] == f"Summarize: {title}"

    # Kafka redelivers the webhook event to the router: no second job, no second message.
    webhook_event = uuid.UUID(response.json()["id"])
    await redeliver_and_wait(
        integrations.settings, "webhook.received", "webhook-router", str(webhook_event)
    )
    # … and the summary job's `ai.job.succeeded` too: no second action.
    request_event = derived_id(webhook_event, f"rule:{rule_id}:request")
    succeeded = derived_id(request_event, "succeeded")
    await redeliver_and_wait(
        integrations.settings, "ai.job.lifecycle", "webhook-router", str(succeeded)
    )
    async with db.session() as session:
        jobs = (
            await session.execute(
                text("SELECT kind FROM jobs WHERE tenant_id = :t ORDER BY kind"),
                {"t": tenant.tenant_id},
            )
        ).all()
    assert [row[0] for row in jobs] == ["action", "chat"]
    assert len(integrations.vendors.matching("slack", channel)) == 1
    # The same delivery again (GitHub's redelivery button): no second job, no second message.
    again = await api.post(
        f"/hooks/{hook['id']}", content=opened, headers=github_headers(secret, opened, delivery)
    )
    assert again.json()["status"] == "duplicate"
    # A closed issue and an opened one in another repository do not match the rule.
    for other in ({"action": "closed", "repository": {"name": "app"}},
                  {"action": "opened", "repository": {"name": "site"}}):  # fmt: skip
        payload = json.dumps({**other, "issue": {"title": title}}).encode()
        skipped = await api.post(
            f"/hooks/{hook['id']}",
            content=payload,
            headers=github_headers(secret, payload, str(uuid.uuid4())),
        )
        assert skipped.status_code == 202
    # An action-only rule on the same endpoint fires for the next delivery only.
    marker = unique("C")
    await rule(api, tenant, {
        "endpoint_id": hook["id"], "event_type": "*",
        "action": {"connection_id": slack, "action": "post_message",
                   "params": {"channel": marker, "text": NUMBERED}},
    })  # fmt: skip
    ping = json.dumps({"action": "edited", "issue": {"title": "t", "number": 9}}).encode()
    await api.post(
        f"/hooks/{hook['id']}", content=ping, headers=github_headers(secret, ping, "d-" + marker)
    )
    marked = await vendor_calls(integrations, "slack", marker)
    assert marked[0].body["text"] == "#9 issues.edited"
    assert len(integrations.vendors.matching("slack", channel)) == 1


async def test_rule_validation_names_the_field(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    hook = await endpoint(api, tenant, "github", unique("gh-"))
    slack = await connect(api, tenant, "slack", {"bot_token": "xoxb-good"})
    cases = [
        ({"endpoint_id": str(uuid.uuid4()), "event_type": "x",
          "job": {"model": "local-echo", "prompt": "p"}}, "endpoint_id"),
        ({"endpoint_id": hook["id"], "event_type": "x",
          "job": {"model": "mystery", "prompt": "p"}}, "job.model"),
        ({"endpoint_id": hook["id"], "event_type": "x",
          "action": {"connection_id": slack, "action": "fly", "params": {}}}, "action.action"),
        ({"endpoint_id": hook["id"], "event_type": "x"}, "body"),
    ]  # fmt: skip
    for body, field in cases:
        response = await api.post("/v1/rules", json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text
        assert field in [d["field"] for d in response.json()["details"]], response.json()


async def test_rule_with_an_unpriced_model_is_refused(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    """Its jobs would be billed: a model without a price is refused when the rule is made."""
    hook = await endpoint(api, tenant, "github", unique("gh-"))
    unpriced = f"gpt-unpriced-{uuid.uuid4().hex[:8]}"
    body = {"endpoint_id": hook["id"], "event_type": "x", "job": {"model": unpriced, "prompt": "p"}}
    response = await api.post("/v1/rules", json=body, headers=tenant.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_priced" and error["param"] == "job.model"
    assert unpriced in error["message"]


async def test_a_failed_action_is_visible_on_its_job(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    """A rule whose rendered params do not fit the action fails that job with a readable error."""
    secret = unique("gh-")
    hook = await endpoint(api, tenant, "github", secret)
    github = await connect(api, tenant, "github", {"token": "ghp_x"})
    rule_id = await rule(api, tenant, {
        "endpoint_id": hook["id"], "event_type": "issues.opened",
        "action": {"connection_id": github, "action": "create_comment",
                   "params": {"owner": "o", "repo": "r",
                              "issue_number": "{{ payload.issue.number }}", "body": "thanks"}},
    })  # fmt: skip
    body = json.dumps({"action": "opened", "issue": {"title": "no number"}}).encode()
    response = await api.post(
        f"/hooks/{hook['id']}", content=body, headers=github_headers(secret, body, unique())
    )
    # The router derives the action job's id from the webhook event and the rule.
    job_id = derived_id(uuid.UUID(response.json()["id"]), f"rule:{rule_id}:action-job")

    async def failed() -> dict[str, object] | None:
        found = await api.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        job = found.json() if found.status_code == 200 else {}
        return job if job.get("status") in ("succeeded", "failed") else None

    job = await eventually(failed, 60, "the action job")
    assert job["status"] == "failed" and "issue_number" in str(job["error"])
    assert job["kind"] == "action"


async def test_a_rule_job_over_the_tenant_budget_fails_visibly(
    api: httpx.AsyncClient, integrations: Integrations, db: Database
) -> None:
    """Work a webhook starts is admitted against the tenant's budget like any other."""
    admin = await make_tenant(db, admin=True)
    put = await api.put("/v1/budgets/tenant", json={"monthly_usd": "0"}, headers=admin.headers)
    assert put.status_code == 200, put.text
    secret = unique("gh-")
    hook = await endpoint(api, admin, "github", secret)
    rule_id = await rule(api, admin, {
        "endpoint_id": hook["id"], "event_type": "issues.opened",
        "job": {"model": "local-echo", "prompt": "Summarize: {{ payload.issue.title }}"},
    })  # fmt: skip
    body = json.dumps({"action": "opened", "issue": {"title": "t", "number": 1}}).encode()
    response = await api.post(
        f"/hooks/{hook['id']}", content=body, headers=github_headers(secret, body, unique())
    )
    assert response.status_code == 202
    job_id = derived_id(uuid.UUID(response.json()["id"]), f"rule:{rule_id}:job")

    async def finished() -> dict[str, object] | None:
        found = await api.get(f"/v1/jobs/{job_id}", headers=admin.headers)
        job = found.json() if found.status_code == 200 else {}
        return job if job.get("status") in ("succeeded", "failed") else None

    job = await eventually(finished, 60, "the rule's job")
    assert job["status"] == "failed", job
    assert str(job["error"]).startswith("budget_exceeded: the tenant's monthly budget is spent")
    assert job["provider"] is None and job["result"] is None  # no model was called
