"""No request body over its limit is read: refused by its length first, cut off as it streams.

The ingress here runs with small limits, so the tests send little.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from tests.conftest import TenantKey, make_tenant, new_platform
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, chunked, raw_http

MAX_BODY = 64 * 1024
MAX_FILE = 256 * 1024
FORM_OVERHEAD = 64 * 1024  # producers.ingress.files
# Routes that take no body: they answer without reading one.
BODILESS = {
    ("POST", "/v1/batches/{batch_id}/cancel"),
    ("POST", "/v1/responses/{response_id}/cancel"),
    ("POST", "/v1/webhook-subscriptions/{subscription_id}/rotate-secret"),
    ("POST", "/v1/schedules/{schedule_id}/pause"),
    ("POST", "/v1/schedules/{schedule_id}/resume"),
    ("POST", "/v1/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"),
}
MULTIPART = "multipart/form-data; boundary=limit"


@pytest.fixture(scope="module")
def ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    platform, _ = new_platform(services, fake_llm, tmp_path_factory.mktemp("body-limits"))
    try:
        platform.start_ingress_with(
            {"AYUSH_MAX_BODY_BYTES": str(MAX_BODY), "AYUSH_BATCH_MAX_BYTES": str(MAX_FILE)}
        )
        yield platform
    finally:
        platform.stop()


@pytest.fixture
async def tenant(db: Database) -> TenantKey:
    """An admin key: every route's body is capped, the administration's included, and the
    access check comes first."""
    return await make_tenant(db, admin=True)


def content_type(path: str) -> str:
    return MULTIPART if path == "/v1/files" else "application/json"


def flood(path: str, size: int) -> bytes:
    """`size` bytes of a body that looks right to the route's parser as far as it goes."""
    if path != "/v1/files":
        return b'{"x": "' + b"a" * size
    part = b'--limit\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n\r\n'
    return part + b"a" * size


def body_routes(platform: Platform) -> list[tuple[str, str, int]]:
    """Every route that takes a body: (method, path with its parameters filled, its limit)."""
    document = httpx.get(f"{platform.url}/openapi.json").json()
    routes = []
    for template, operations in document["paths"].items():
        for method in operations:
            method = method.upper()
            if method not in ("POST", "PUT", "PATCH") or (method, template) in BODILESS:
                continue
            if template.startswith("/hooks/"):
                continue  # a webhook delivery's limit is its own (tests/integrations)
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
            limit = MAX_FILE + FORM_OVERHEAD if template == "/v1/files" else MAX_BODY
            routes.append((method, path, limit))
    return routes


def error_code(body: dict[str, object]) -> object:
    """The error's name, in any shape: Ayush's, or OpenAI's or Anthropic's on their routes."""
    error = body["error"]
    if isinstance(error, dict):  # OpenAI's `code`, or Anthropic's `type` on /v1/messages
        return error.get("code", error.get("type"))
    return error


async def test_every_body_is_refused_by_its_declared_length_before_it_is_read(
    ingress: Platform, tenant: TenantKey
) -> None:
    routes = body_routes(ingress)
    assert len(routes) >= 10, routes
    for method, path, limit in routes:
        # The body is promised and never sent: an answer at all means none was awaited.
        headers = {"Content-Type": content_type(path), "Content-Length": str(limit + 1)}
        answer = await raw_http(ingress.url, method, path, {**tenant.headers, **headers})
        assert answer.status == 413, (method, path, answer)
        assert answer.headers["content-type"] == "application/json", (method, path)
        code = error_code(answer.json())
        if path == "/v1/files":
            assert code == "file_too_large", answer.json()
        else:
            assert code in ("payload_too_large", "request_too_large"), (method, path, code)


async def test_a_body_without_a_length_is_cut_off_at_the_limit(
    ingress: Platform, tenant: TenantKey
) -> None:
    for method, path, limit in body_routes(ingress):
        # Twice the limit, chunked, and never ended: only a reader that stops at the
        # limit answers.
        body = chunked(flood(path, 2 * limit), end=False)
        headers = {"Content-Type": content_type(path), "Transfer-Encoding": "chunked"}
        answer = await raw_http(ingress.url, method, path, {**tenant.headers, **headers}, body)
        assert answer.status == 413, (method, path, answer)
        assert answer.headers["content-type"] == "application/json", (method, path)


async def test_an_anonymous_upload_is_refused_before_its_body_is_read(ingress: Platform) -> None:
    answer = await raw_http(
        ingress.url, "POST", "/v1/files", {"Content-Type": MULTIPART, "Content-Length": "1000"}
    )
    assert answer.status == 401
    assert answer.json()["error"] == "unauthorized"


async def test_an_upload_is_capped_at_the_file_limit(ingress: Platform, tenant: TenantKey) -> None:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=30) as http:
        fits = await http.post(
            "/v1/files", headers=tenant.headers, data={"purpose": "batch"},
            files={"file": ("in.jsonl", b"x" * MAX_FILE)},
        )  # fmt: skip
        over = await http.post(
            "/v1/files", headers=tenant.headers, data={"purpose": "batch"},
            files={"file": ("in.jsonl", b"x" * (MAX_FILE + 1))},
        )  # fmt: skip
        missing = await http.post(
            "/v1/files", headers=tenant.headers, files={"file": ("in.jsonl", b"x")}
        )
    assert fits.status_code == 200 and fits.json()["bytes"] == MAX_FILE
    assert over.status_code == 413 and over.json()["error"]["code"] == "file_too_large"
    assert missing.status_code == 422
    assert [d["field"] for d in missing.json()["details"]] == ["purpose"]
