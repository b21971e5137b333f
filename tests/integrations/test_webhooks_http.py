"""Webhooks in over HTTP: verified, deduplicated, published; refused ones publish nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from infra.kafka.codec import decode_raw
from tests.conftest import TenantKey
from tests.harness import chunked, raw_http, unique
from tests.integrations.conftest import MAX_WEBHOOK_BYTES, Integrations
from tests.kafka_tools import read_topic

# The package's first test also starts an ingress and three workers: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)


async def endpoint(
    api: httpx.AsyncClient, tenant: TenantKey, source: str, secret: str | None = None, **extra: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"source": source, **extra}
    if secret is not None:
        body["secret"] = secret
    response = await api.post("/v1/webhook-endpoints", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["url"].endswith(f"/hooks/{created['id']}")
    return created


def github_headers(
    secret: str, body: bytes, delivery: str, event: str = "issues"
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "Content-Type": "application/json",
    }


def slack_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def standard_headers(secret: str, body: bytes, msg_id: str, timestamp: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


async def published_for(integrations: Integrations, endpoint_id: str) -> list[Any]:
    records = await read_topic(integrations.settings, "webhook.received")
    events = [decode_raw(r.value) for r in records]
    return [e for e in events if e.payload["endpoint_id"] == endpoint_id]


async def test_github_delivery_is_published_once_with_its_raw_body(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    secret = unique("gh-secret-")
    hook = await endpoint(api, tenant, "github", secret)
    # Odd spacing on purpose: verification must use the bytes as sent.
    body = b'{"action":  "opened", "issue": {"title": "Crash", "number": 3}}'
    delivery = str(uuid.uuid4())
    headers = github_headers(secret, body, delivery)
    first = await api.post(f"/hooks/{hook['id']}", content=body, headers=headers)
    again = await api.post(f"/hooks/{hook['id']}", content=body, headers=headers)
    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert first.json()["id"] == again.json()["id"]

    events = await published_for(integrations, hook["id"])
    assert len(events) == 1
    event = events[0]
    assert str(event.id) == first.json()["id"] and event.tenant_id == tenant.tenant_id
    assert event.type == "webhook.received" and event.actor.kind == "webhook"
    assert base64.b64decode(event.payload["body"]) == body
    assert event.payload["event_type"] == "issues.opened"
    assert event.payload["delivery_id"] == delivery
    assert event.payload["payload"]["issue"]["title"] == "Crash"


async def test_refused_deliveries_publish_nothing(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    secret = unique("gh-secret-")
    hook = await endpoint(api, tenant, "github", secret)
    url = f"/hooks/{hook['id']}"
    body = b'{"action": "opened"}'
    good = github_headers(secret, body, str(uuid.uuid4()))
    forged = github_headers("not-the-secret", body, str(uuid.uuid4()))

    assert (await api.post(f"/hooks/{uuid.uuid4()}", content=body, headers=good)).status_code == 404
    assert (await api.post("/hooks/not-an-id", content=body, headers=good)).status_code == 404
    assert (await api.post(url, content=body, headers=forged)).status_code == 401
    unsigned = {k: v for k, v in good.items() if k != "X-Hub-Signature-256"}
    assert (await api.post(url, content=body, headers=unsigned)).status_code == 401
    tampered = await api.post(url, content=body.replace(b"opened", b"closed"), headers=good)
    assert tampered.status_code == 401 and tampered.json()["error"] == "invalid_signature"
    big = b'{"x": "' + b"a" * MAX_WEBHOOK_BYTES + b'"}'
    too_big = await api.post(url, content=big, headers=github_headers(secret, big, "big"))
    assert too_big.status_code == 413
    assert await published_for(integrations, hook["id"]) == []

    # Slack: a validly signed request replayed after the five-minute window.
    slack_secret = unique("slack-secret-")
    slack = await endpoint(api, tenant, "slack", slack_secret)
    old = int(time.time()) - 301
    payload = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "x"}})
    stale = await api.post(
        f"/hooks/{slack['id']}",
        content=payload.encode(),
        headers=slack_headers(slack_secret, payload.encode(), old),
    )
    assert stale.status_code == 401
    # Standard Webhooks: stale timestamp.
    std = await endpoint(api, tenant, "standard")
    old_std = await api.post(
        f"/hooks/{std['id']}",
        content=b"{}",
        headers=standard_headers(std["secret"], b"{}", "msg_1", int(time.time()) - 3600),
    )
    assert old_std.status_code == 401
    assert await published_for(integrations, slack["id"]) == []
    assert await published_for(integrations, std["id"]) == []


async def test_a_delivery_over_the_limit_is_refused_before_it_is_read(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    secret = unique("gh-secret-")
    hook = await endpoint(api, tenant, "github", secret)
    path = f"/hooks/{hook['id']}"
    headers = github_headers(secret, b"{}", "over")
    promised = {**headers, "Content-Length": str(MAX_WEBHOOK_BYTES + 1)}
    declared = await raw_http(integrations.url, "POST", path, promised)
    assert declared.status == 413 and declared.json()["error"] == "payload_too_large"
    flood = chunked(b'{"x": "' + b"a" * 2 * MAX_WEBHOOK_BYTES, end=False)
    streamed = {**headers, "Transfer-Encoding": "chunked"}
    assert (await raw_http(integrations.url, "POST", path, streamed, flood)).status == 413
    assert await published_for(integrations, hook["id"]) == []


async def test_slack_url_verification_and_events(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    secret = unique("slack-secret-")
    hook = await endpoint(api, tenant, "slack", secret)
    challenge = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV"})
    now = int(time.time())
    answer = await api.post(
        f"/hooks/{hook['id']}",
        content=challenge.encode(),
        headers=slack_headers(secret, challenge.encode(), now),
    )
    assert answer.status_code == 200 and answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}
    event = json.dumps(
        {"type": "event_callback", "event_id": "Ev9", "event": {"type": "app_mention"}}
    ).encode()
    for retry in ("", "1"):  # Slack retries with the same event_id
        headers = {**slack_headers(secret, event, now), "X-Slack-Retry-Num": retry}
        response = await api.post(f"/hooks/{hook['id']}", content=event, headers=headers)
        assert response.status_code in (200, 202)
    events = await published_for(integrations, hook["id"])
    assert [e.payload["event_type"] for e in events] == ["app_mention"]
    assert events[0].payload["delivery_id"] == "Ev9"


async def test_stripe_standard_and_generic_hmac_deliveries(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    now = int(time.time())
    stripe_secret = "whsec_" + unique()
    stripe = await endpoint(api, tenant, "stripe", stripe_secret)
    body = json.dumps({"id": "evt_" + unique(), "type": "invoice.paid"}).encode()
    v1 = hmac.new(stripe_secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    paid = await api.post(
        f"/hooks/{stripe['id']}", content=body, headers={"Stripe-Signature": f"t={now},v1={v1}"}
    )
    assert paid.status_code == 202, paid.text

    std = await endpoint(api, tenant, "standard")
    assert std["secret"].startswith("whsec_")  # generated, shown once
    std_body = b'{"type": "user.created"}'
    created = await api.post(
        f"/hooks/{std['id']}",
        content=std_body,
        headers=standard_headers(std["secret"], std_body, "msg_" + unique(), now),
    )
    assert created.status_code == 202, created.text

    generic = await endpoint(api, tenant, "hmac", "shared-s3cret", signature_header="X-Acme-Sig")
    gbody = b'{"type": "build.done"}'
    sig = hmac.new(b"shared-s3cret", gbody, hashlib.sha256).hexdigest()
    done = await api.post(f"/hooks/{generic['id']}", content=gbody, headers={"X-Acme-Sig": sig})
    assert done.status_code == 202, done.text

    for hook, kind in ((stripe, "invoice.paid"), (std, "user.created"), (generic, "build.done")):
        events = await published_for(integrations, hook["id"])
        assert [e.payload["event_type"] for e in events] == [kind]

    missing = await api.post(
        "/v1/webhook-endpoints", json={"source": "stripe"}, headers=tenant.headers
    )
    assert missing.status_code == 422 and missing.json()["details"][0]["field"] == "secret"


async def test_a_signed_body_replayed_under_fresh_ids_publishes_nothing(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    """GitHub and generic HMAC sign the body only, not the ids nor GitHub's event type."""
    secret = unique("gh-secret-")
    hook = await endpoint(api, tenant, "github", secret)
    url = f"/hooks/{hook['id']}"
    body = b'{"action": "opened", "issue": {"number": 7}}'
    first = await api.post(url, content=body, headers=github_headers(secret, body, "d-1"))
    assert first.status_code == 202, first.text
    # Captured and sent again: a fresh delivery id, another event type, the same signed body.
    for delivery, event in (("d-2", "issues"), ("d-3", "push")):
        headers = github_headers(secret, body, delivery, event)
        replay = await api.post(url, content=body, headers=headers)
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"status": "duplicate", "id": first.json()["id"]}
    closed = body.replace(b"opened", b"closed")  # another body is another delivery
    later = await api.post(url, content=closed, headers=github_headers(secret, closed, "d-4"))
    assert later.status_code == 202, later.text
    events = await published_for(integrations, hook["id"])
    # Deliveries land on partitions by their id: the order across them is not kept.
    published = sorted((e.payload["delivery_id"], e.payload["event_type"]) for e in events)
    assert published == [("d-1", "issues.opened"), ("d-4", "issues.closed")]

    generic = await endpoint(api, tenant, "hmac", "shared-s3cret")
    gbody = b'{"type": "build.done", "build": 41}'
    sig = hmac.new(b"shared-s3cret", gbody, hashlib.sha256).hexdigest()
    answers = [
        await api.post(f"/hooks/{generic['id']}", content=gbody,
                       headers={"X-Signature": sig, "X-Delivery-Id": delivery})
        for delivery in ("g-1", "g-2", "g-3")
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [202, 200, 200]
    assert len(await published_for(integrations, generic["id"])) == 1


async def test_nul_in_a_webhook_payload_is_refused_naming_it(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    """Postgres stores no NUL: the delivery's id (here Stripe's, from the payload) would fail."""
    secret = "whsec_" + unique()
    created = await api.post(
        "/v1/webhook-endpoints", json={"source": "stripe", "secret": secret}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    now = int(time.time())
    body = json.dumps({"id": "evt_\x00" + unique(), "type": "invoice.paid"}).encode()
    v1 = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    response = await api.post(
        f"/hooks/{created.json()['id']}",
        content=body,
        headers={"Stripe-Signature": f"t={now},v1={v1}"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "payload.id"
