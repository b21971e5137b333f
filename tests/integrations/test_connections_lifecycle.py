"""A connection's lifecycle over HTTP, end to end: listed and read without secrets, its
credentials rotated (the next action reaches the vendor with the new token), deleted (the vendor
revokes the token; later actions fail saying so), hidden from other tenants and roles."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from infra.connectors import CATALOG
from infra.db import actions as action_store
from infra.db import jobs as job_store
from infra.db.engine import Database
from infra.db.tenants import create_api_key
from infra.kafka.publisher import Publisher
from schemas import integrations as integration_events
from schemas import topics
from schemas.envelope import Actor, Envelope
from schemas.ids import uuid7
from tests.conftest import TenantKey, make_tenant
from tests.harness import unique
from tests.integrations.conftest import Integrations
from tests.integrations.helpers import act, connect, vendor_calls
from tests.test_jobs_http import wait_finished

pytestmark = pytest.mark.timeout(300)


def authorization(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "authorization"), "")


def fields_named(response: httpx.Response) -> list[str]:
    return [d["field"] for d in response.json().get("details", [])]


async def test_connections_are_listed_and_read_without_secrets(
    api: httpx.AsyncClient, tenant: TenantKey
) -> None:
    token = unique("xoxb-secret-")
    slack = await connect(api, tenant, "slack", {"bot_token": token})
    github = [await connect(api, tenant, "github", {"token": unique("ghp_")}) for _ in range(2)]

    one = await api.get(f"/v1/connections/{slack}", headers=tenant.headers)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["connector"] == "slack" and body["status"] == "active"
    assert body["credential_fields"] == ["bot_token"]
    assert body["created_at"] and body["rotated_at"] is None
    assert token not in one.text

    listed = await api.get("/v1/connections", params={"limit": 2}, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [c["id"] for c in page["data"]] == list(reversed(github))  # newest first
    assert page["has_more"] is True and token not in listed.text
    rest = await api.get(
        "/v1/connections", params={"limit": 2, "after": page["last_id"]}, headers=tenant.headers
    )
    assert [c["id"] for c in rest.json()["data"]] == [slack]
    assert rest.json()["has_more"] is False

    only = await api.get("/v1/connections", params={"connector": "slack"}, headers=tenant.headers)
    assert [c["id"] for c in only.json()["data"]] == [slack]
    unknown = await api.get("/v1/connections", params={"connector": "fax"}, headers=tenant.headers)
    assert unknown.status_code == 422 and fields_named(unknown) == ["connector"]


async def test_rotated_credentials_reach_the_vendor_on_the_next_action(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    old, new = unique("xoxb-old-"), unique("xoxb-new-")
    slack = await connect(api, tenant, "slack", {"bot_token": old})
    before = unique("CROT")
    job = await act(api, tenant, slack, "post_message", {"channel": before, "text": "hi"})
    assert (await wait_finished(api, tenant, job))["status"] == "succeeded"
    [call] = await vendor_calls(integrations, "slack", before)
    assert authorization(call.headers) == f"Bearer {old}"

    rotated = await api.patch(
        f"/v1/connections/{slack}",
        json={"name": "ops", "credentials": {"bot_token": new}},
        headers=tenant.headers,
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["name"] == "ops" and rotated.json()["rotated_at"]
    assert new not in rotated.text and old not in rotated.text

    after = unique("CROT")
    job = await act(api, tenant, slack, "post_message", {"channel": after, "text": "hi"})
    assert (await wait_finished(api, tenant, job))["status"] == "succeeded"
    [call] = await vendor_calls(integrations, "slack", after)
    assert authorization(call.headers) == f"Bearer {new}"
    shown = (await api.get(f"/v1/connections/{slack}", headers=tenant.headers)).json()
    assert shown["last_used_at"] and shown["name"] == "ops"


async def test_bad_rotation_is_refused_naming_the_field_and_keeps_the_old_credentials(
    api: httpx.AsyncClient, tenant: TenantKey
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": unique("xoxb-")})
    secret = unique("s3cret-")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"credentials": {"bot_token": ""}}, "credentials.bot_token"),
        ({"credentials": {"bot_token": "x", "extra": secret}}, "credentials.extra"),
        ({"credentials": {}}, "credentials.bot_token"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({}, "name"),
        ({"nickname": "x"}, "nickname"),
    ]
    for body, field in cases:
        refused = await api.patch(f"/v1/connections/{slack}", json=body, headers=tenant.headers)
        assert refused.status_code == 422, (body, refused.text)
        assert fields_named(refused) == [field], (body, refused.text)
        assert secret not in refused.text
    shown = (await api.get(f"/v1/connections/{slack}", headers=tenant.headers)).json()
    assert shown["rotated_at"] is None


async def test_deleting_revokes_the_token_and_later_actions_fail_clearly(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    token = unique("xoxb-gone-")
    slack = await connect(api, tenant, "slack", {"bot_token": token})
    deleted = await api.delete(f"/v1/connections/{slack}", headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "id": slack,
        "deleted": True,
        "revocation": "revoked",
        "revocation_error": None,
    }
    revokes = [
        c
        for c in integrations.vendors.calls
        if c.path.endswith("/auth.revoke") and authorization(c.headers) == f"Bearer {token}"
    ]
    assert len(revokes) == 1

    action = await api.post(
        "/v1/actions",
        json={
            "connection_id": slack,
            "action": "post_message",
            "params": {"channel": "C1", "text": "x"},
        },
        headers=tenant.headers,
    )
    assert action.status_code == 409, action.text
    assert action.json()["error"] == "connection_deleted"
    assert fields_named(action) == ["connection_id"]
    for method in ("GET", "PATCH", "DELETE"):
        gone = await api.request(
            method, f"/v1/connections/{slack}", json={"name": "n"}, headers=tenant.headers
        )
        assert gone.status_code == 404, (method, gone.text)
    listed = (await api.get("/v1/connections", headers=tenant.headers)).json()
    assert slack not in [c["id"] for c in listed["data"]]


async def test_deleting_says_when_the_vendor_offers_no_revocation_or_refuses_it(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations
) -> None:
    app_token = unique("ghs_")
    github_app = await connect(api, tenant, "github", {"token": app_token})
    github_pat = await connect(api, tenant, "github", {"token": unique("ghp_")})
    telegram = await connect(api, tenant, "telegram", {"bot_token": unique("123:")})
    slack_kept = await connect(api, tenant, "slack", {"bot_token": unique("xoxb-keep-")})

    async def delete(connection_id: str) -> dict[str, Any]:
        response = await api.delete(f"/v1/connections/{connection_id}", headers=tenant.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert (await delete(github_app))["revocation"] == "revoked"
    assert [
        c.path
        for c in integrations.vendors.calls
        if authorization(c.headers) == f"Bearer {app_token}"
    ] == ["/github/installation/token"]
    assert (await delete(github_pat))["revocation"] == "not_offered"
    assert (await delete(telegram))["revocation"] == "not_offered"
    refused = await delete(slack_kept)
    assert refused["revocation"] == "failed"
    assert "not_allowed_token_type" in refused["revocation_error"]
    # Deleted all the same: the credentials are wiped, revoking by hand is the tenant's part.
    gone = await api.get(f"/v1/connections/{slack_kept}", headers=tenant.headers)
    assert gone.status_code == 404


async def test_another_tenants_connection_is_not_found(
    api: httpx.AsyncClient, tenant: TenantKey, db: Database
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": unique("xoxb-")})
    other = await make_tenant(db, admin=True)
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.request(
            method,
            f"/v1/connections/{slack}",
            json={"credentials": {"bot_token": "xoxb-mine"}},
            headers=other.headers,
        )
        assert response.status_code == 404, (method, response.text)
    assert (await api.get("/v1/connections", headers=other.headers)).json()["data"] == []
    kept = (await api.get(f"/v1/connections/{slack}", headers=tenant.headers)).json()
    assert kept["rotated_at"] is None


async def test_auditors_read_connections_and_unscoped_developers_do_not(
    api: httpx.AsyncClient, tenant: TenantKey, db: Database
) -> None:
    slack = await connect(api, tenant, "slack", {"bot_token": unique("xoxb-")})

    async def headers(role: Any, scopes: tuple[str, ...] = ()) -> dict[str, str]:
        _, plaintext = await create_api_key(
            db, uuid.UUID(str(tenant.tenant_id)), role=role, scopes=scopes
        )
        return {"Authorization": f"Bearer {plaintext}"}

    auditor = await headers("auditor")
    assert (await api.get(f"/v1/connections/{slack}", headers=auditor)).status_code == 200
    assert (await api.get("/v1/connections", headers=auditor)).status_code == 200
    patched = await api.patch(f"/v1/connections/{slack}", json={"name": "n"}, headers=auditor)
    assert patched.status_code == 403
    developer = await headers("developer")
    assert (await api.get("/v1/connections", headers=developer)).status_code == 403
    scoped = await headers("developer", ("connections:read",))
    assert (await api.get("/v1/connections", headers=scoped)).status_code == 200


async def test_connector_list_gives_every_connector_its_schemas(
    api: httpx.AsyncClient, tenant: TenantKey
) -> None:
    response = await api.get("/v1/connectors", headers=tenant.headers)
    assert response.status_code == 200, response.text
    listed = response.json()["connectors"]
    assert [c["name"] for c in listed] == list(CATALOG)
    for connector in listed:
        assert connector["title"] and connector["description"] and connector["auth"]
        assert connector["revocable"] == bool(connector["revocation"])
        credentials = connector["credentials_schema"]
        Draft202012Validator.check_schema(credentials)
        assert credentials["type"] == "object" and credentials["properties"]
        assert credentials["additionalProperties"] is False  # an unknown field is refused
        # Every connector but mcp has its actions; mcp's are its server's tools.
        assert bool(connector["actions"]) == (connector["name"] != "mcp"), connector["name"]
        for action in connector["actions"]:
            Draft202012Validator.check_schema(action["params_schema"])
            assert action["params_schema"]["type"] == "object", action["name"]
    slack = next(c for c in listed if c["name"] == "slack")
    validator = Draft202012Validator(slack["credentials_schema"])
    assert validator.is_valid({"bot_token": "xoxb-1"})
    assert not validator.is_valid({"bot_token": "xoxb-1", "other": 1})
    assert slack["revocable"] is True
    assert not next(c for c in listed if c["name"] == "telegram")["revocable"]


async def test_an_action_queued_before_the_delete_fails_saying_it_was_deleted(
    api: httpx.AsyncClient, tenant: TenantKey, integrations: Integrations, db: Database
) -> None:
    """The request event of an action accepted before the delete, handled after it (as a
    backlog would): the job fails naming the deletion, and the vendor is not called."""
    slack = await connect(api, tenant, "slack", {"bot_token": unique("xoxb-")})
    assert (await api.delete(f"/v1/connections/{slack}", headers=tenant.headers)).is_success
    channel = unique("CLATE")
    job_id, event_id, tenant_id = uuid7(), uuid7(), uuid.UUID(str(tenant.tenant_id))
    payload = integration_events.ActionRequested(
        job_id=job_id,
        connection_id=uuid.UUID(slack),
        connector="slack",
        action="post_message",
        params={"channel": channel, "text": "late"},
    )
    await job_store.insert_job(
        db,
        action_store.action_job(
            job_id=job_id,
            tenant_id=tenant_id,
            api_key_id=None,
            connector="slack",
            action="post_message",
            request=payload.model_dump(mode="json", include={"connection_id", "action", "params"}),
            event_id=event_id,
        ),
    )
    envelope = Envelope[Any](
        id=event_id,
        type=integration_events.ACTION_REQUESTED,
        tenant_id=tenant_id,
        actor=Actor(kind="system", id="test"),
        correlation_id=job_id,
        payload=payload,
    )
    publisher = Publisher(integrations.settings)
    await publisher.start()
    try:
        await publisher.publish(topics.INTEGRATION_ACTION_REQUESTED.name, envelope)
    finally:
        await publisher.stop()
    job = await wait_finished(api, tenant, str(job_id), timeout_s=60)
    assert job["status"] == "failed", job
    assert f"connection {slack} was deleted" in str(job["error"])
    assert integrations.vendors.matching("slack", channel) == []
