"""Every refused request names the field at fault, on every route with a JSON body;
a NUL character, which Postgres cannot store, is refused wherever a caller can send one."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from infra.db.engine import Database
from tests.conftest import TenantKey, make_tenant

Json = dict[str, Any]
CHAT = [{"role": "user", "content": "hello"}]

# A body each route accepts; the test walks the served OpenAPI document, so a
# new route with a JSON body fails it until it has one here.
VALID: dict[tuple[str, str], Json] = {
    ("post", "/v1/chat/completions"): {"model": "local-echo", "messages": CHAT},
    ("post", "/v1/embeddings"): {"model": "text-embedding-3-small", "input": "hello"},
    ("post", "/v1/messages"): {
        "model": "local-echo",
        "max_tokens": 16,
        "messages": CHAT,
        "system": "be brief",
    },
    ("post", "/v1/messages/count_tokens"): {
        "model": "local-echo",
        "messages": CHAT,
        "system": "be brief",
    },
    ("post", "/v1/routing/explain"): {
        "model": "auto",
        "messages": CHAT,
        "metadata": {"difficulty": "easy"},
    },
    ("post", "/v1/responses"): {"model": "local-echo", "input": "hello", "metadata": {"a": "b"}},
    ("post", "/v1/jobs"): {"kind": "chat", "model": "local-echo", "messages": CHAT},
    ("post", "/v1/conversations"): {"items": CHAT, "metadata": {"a": "b"}, "user_id": "ann"},
    ("post", "/v1/conversations/{conversation_id}"): {"metadata": {"a": "b"}},
    ("post", "/v1/conversations/{conversation_id}/items"): {"items": CHAT},
    ("put", "/v1/budgets/tenant"): {"monthly_usd": "10"},
    ("put", "/v1/budgets/keys/{key_id}"): {"monthly_usd": "10"},
    ("put", "/v1/ratelimits/keys/{key_id}"): {"rpm": 10, "tpm": 1000},
    ("put", "/v1/tenant/settings"): {"cors_origins": ["https://app.example.com"]},
    ("put", "/v1/budgets/users/default"): {"monthly_usd": "1"},
    ("put", "/v1/budgets/users/{user_id}"): {"monthly_usd": "1"},
    ("put", "/v1/ratelimits/users/default"): {"rpm": 20, "tpm": 1000},
    ("put", "/v1/ratelimits/users/{user_id}"): {"rpm": 20, "tpm": 1000},
    ("post", "/v1/keys"): {"name": "n", "role": "developer"},
    ("post", "/v1/keys/{key_id}/rotate"): {"grace_s": 60},
    ("post", "/v1/auth/issuers"): {
        "issuer": "https://id.example.com",
        "audience": "app",
        "hs256_secret": "a-long-enough-shared-secret-for-hs256",
        "user_claim": "sub",
    },
    ("post", "/v1/batches"): {
        "input_file_id": "file-x",
        "endpoint": "/v1/chat/completions",
        "metadata": {"a": "b"},
    },
    ("post", "/v1/connections"): {"connector": "http", "name": "n", "credentials": {}},
    ("patch", "/v1/connections/{connection_id}"): {"name": "n"},
    ("post", "/v1/actions"): {"connection_id": str(uuid.uuid4()), "action": "a", "params": {}},
    ("post", "/v1/memories"): {"user_id": "u", "text": "t", "metadata": {"a": "b"}},
    ("post", "/v1/memories/search"): {"user_id": "u", "query": "q", "filter": {"a": "b"}},
    ("post", "/v1/webhook-endpoints"): {"source": "hmac", "secret": "s3cret-s3cret"},
    ("post", "/v1/webhook-subscriptions"): {
        "url": "https://hooks.example.com/in",
        "event_types": ["job.*"],
        "description": "d",
    },
    ("patch", "/v1/webhook-subscriptions/{subscription_id}"): {"description": "d"},
    ("post", "/v1/schedules"): {
        "name": "daily",
        "cron": "0 9 * * *",
        "timezone": "Europe/Berlin",
        "target": {"job": {"model": "local-echo", "prompt": "p"}},
    },
    ("patch", "/v1/schedules/{schedule_id}"): {"name": "n"},
    ("post", "/v1/tasks"): {"title": "t", "notes": "n", "user_id": "ann"},
    ("patch", "/v1/tasks/{task_id}"): {"title": "t"},
    ("post", "/v1/webhook-subscriptions/{subscription_id}/redeliver"): {
        "since": "2026-01-01T00:00:00Z"
    },
    ("post", "/v1/alert-rules"): {
        "name": "errors",
        "kind": "error_rate",
        "model": "gpt-4o-mini",
        "window_s": 300,
        "threshold": 0.5,
    },
    ("patch", "/v1/alert-rules/{rule_id}"): {"name": "n"},
    ("post", "/v1/rules"): {
        "endpoint_id": str(uuid.uuid4()),
        "event_type": "*",
        "filter": {"a": "b"},
        "job": {"model": "local-echo", "prompt": "p"},
    },
}
# A value no field accepts: not a string, number, object or list of scalars.
WRONG = [[[]]]


def json_routes(openapi: Json) -> dict[tuple[str, str], Json]:
    """(method, path) -> the JSON Schema of the body, for every route with a JSON body."""
    components = openapi["components"]["schemas"]
    found = {}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"]
                found[(method, path)] = components[ref.rsplit("/", 1)[-1]]
    return found


def named_fields(response: httpx.Response) -> list[str]:
    """The fields a refusal names: every detail of ours, OpenAI's one `param`, or the one
    Anthropic's message starts with (`max_tokens: Field required`)."""
    body = response.json()
    if "details" in body:
        return [d["field"] for d in body["details"]]
    if body.get("type") == "error":
        return [body["error"]["message"].split(":", 1)[0]]
    return [body["error"]["param"]]


def names(fields: list[str], field: str) -> bool:
    return any(f == field or f.startswith(f"{field}.") for f in fields)


async def send(
    client: httpx.AsyncClient, tenant: TenantKey, method: str, path: str, body: Any
) -> httpx.Response:
    url = path.replace("{key_id}", str(uuid.uuid4())).replace("{user_id}", "ann")
    url = url.replace("{conversation_id}", f"conv_{uuid.uuid4().hex}")
    url = url.replace("{subscription_id}", str(uuid.uuid4()))
    url = url.replace("{connection_id}", str(uuid.uuid4()))
    url = url.replace("{schedule_id}", str(uuid.uuid4())).replace("{task_id}", str(uuid.uuid4()))
    url = url.replace("{rule_id}", str(uuid.uuid4()))
    return await client.request(method, url, content=json.dumps(body), headers=tenant.headers)


def refused(response: httpx.Response, path: str) -> bool:
    # The OpenAI- and Anthropic-compatible routes answer 400, as those vendors do; ours 422.
    return response.status_code == (400 if path in OPENAI + ANTHROPIC else 422)


OPENAI = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/conversations",
    "/v1/conversations/{conversation_id}",
    "/v1/conversations/{conversation_id}/items",
)
# Anthropic's shape names the first field at fault only.
ANTHROPIC = ("/v1/messages", "/v1/messages/count_tokens")


async def test_every_json_route_names_the_missing_or_wrong_field(
    client: httpx.AsyncClient, db: Database
) -> None:
    tenant = await make_tenant(db, admin=True)  # admin routes check their body too
    routes = json_routes((await client.get("/openapi.json")).json())
    assert routes.keys() == VALID.keys()
    for (method, path), schema in routes.items():
        required = schema.get("required", [])
        empty = await send(client, tenant, method, path, {} if required else [])
        assert refused(empty, path), (path, empty.text)
        fields = named_fields(empty)
        if path in OPENAI + ANTHROPIC:
            # a body that is not an object names no field of it (OpenAI: `param` null)
            assert fields[0] in (required or [None]), (path, fields)
        elif required:
            assert "body" not in fields, (path, empty.text)
            assert set(required) <= set(fields), (path, fields)
        else:
            assert fields == ["body"], (path, fields)  # not an object at all
        valid = VALID[(method, path)]
        for field in schema["properties"]:
            wrong = await send(client, tenant, method, path, {**valid, field: WRONG})
            assert refused(wrong, path), (path, field, wrong.text)
            assert names(named_fields(wrong), field), (path, field, wrong.text)


async def test_memory_search_without_query_names_query(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    response = await client.post(
        "/v1/memories/search", json={"user_id": "u"}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert named_fields(response) == ["query"]
    assert response.json()["message"] == "invalid field: query"


async def test_chat_job_without_messages_is_refused_naming_messages(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    response = await client.post(
        "/v1/jobs", json={"kind": "chat", "model": "local-echo"}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert named_fields(response) == ["messages"]


async def test_nul_in_any_text_field_is_refused_naming_the_field(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Postgres stores no NUL: every text a body carries is checked, top-level and nested."""
    tenant = await make_tenant(db, admin=True)
    routes = json_routes((await client.get("/openapi.json")).json())
    for (method, path), schema in routes.items():
        valid = VALID[(method, path)]
        for field, value in valid.items():
            if isinstance(value, str):
                bad: Any = value + "\x00"
            elif isinstance(value, dict) and value:
                bad = {k: f"{v}\x00" if isinstance(v, str) else v for k, v in value.items()}
                if bad == value:
                    continue  # objects only (a schedule's target): nested cases are below
            else:
                continue
            response = await send(client, tenant, method, path, {**valid, field: bad})
            assert refused(response, path), (path, field, response.text)
            assert names(named_fields(response), field), (path, field, response.text)
            prop = schema["properties"][field]
            if prop.get("type") == "string" and not prop.keys() & {"enum", "const", "format"}:
                assert "NUL" in response.text, (path, field, response.text)
    job = VALID[("post", "/v1/jobs")]
    text_part = [{"type": "text", "text": "\x00"}]
    nested = [
        ("/v1/jobs", {**job, "messages": [{"role": "user", "content": "a\x00"}]},
         "messages.0.content"),
        ("/v1/chat/completions",
         {"model": "local-echo", "messages": [{"role": "user", "content": text_part}]},
         "messages.0.content"),
        ("/v1/jobs", {**job, "memory": {"user_id": "u\x00"}}, "memory.user_id"),
        ("/v1/rules", {**VALID[("post", "/v1/rules")], "job": {"model": "m", "prompt": "\x00"}},
         "job.prompt"),
        ("/v1/schedules",
         {**VALID[("post", "/v1/schedules")], "target": {"job": {"model": "m", "prompt": "\x00"}}},
         "target"),
        ("/v1/actions", {**VALID[("post", "/v1/actions")], "params": {"b": {"c": ["\x00"]}}},
         "params"),
    ]  # fmt: skip
    for path, body, field in nested:
        response = await send(client, tenant, "post", path, body)
        assert refused(response, path), (path, response.text)
        assert names(named_fields(response), field), (path, field, response.text)


async def test_nul_in_a_query_parameter_is_refused_naming_it(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, "/v1/memories", params={"user_id": "u\x00"}, headers=tenant.headers
        )
        assert response.status_code == 422, response.text
        assert named_fields(response) == ["user_id"]


async def test_nul_in_an_uploaded_file_name_is_refused(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="in\x00.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n{}\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    headers = {**tenant.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post("/v1/files", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "file"
