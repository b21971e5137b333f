"""Generic HTTP: any method, URL, headers and JSON body.

A connection's headers (e.g. Authorization) are a secret, and the URL of an action may come from
a rule's template fed by a webhook's payload or a model's answer. So a connection is bound to the
origins it was created for: `base_url` (its scheme, host and port) or `allowed_hosts` (host
names, any scheme and port). An action aimed elsewhere is refused before any request is made.
A connection created before this binding existed, with headers and no binding, sends nothing
(every action fails, saying how to fix it); one without headers carries no secret and may call
any URL the address policy allows.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import Field, ValidationInfo, model_validator

from infra.connectors.base import ActionSpec, Connector, Strict
from infra.errors import PermanentError

DEFAULT_PORTS = {"http": 80, "https": 443}
UNBOUND = (
    "this http connection has headers but no base_url or allowed_hosts, so they are sent "
    "nowhere; create the connection again with base_url or allowed_hosts"
)


class HttpCredentials(Strict):
    """Headers that carry the secret (e.g. Authorization), added to every request, and the
    origins they may be sent to."""

    headers: dict[str, str] = Field(default_factory=dict)
    base_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+", max_length=2000)
    allowed_hosts: list[str] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _bound_when_new(self, info: ValidationInfo) -> HttpCredentials:
        # Stored connections of before the binding still load (their actions say what to do).
        creating = bool(info.context and info.context.get("creating"))
        if creating and self.headers and not (self.base_url or self.allowed_hosts):
            raise ValueError("headers need base_url or allowed_hosts: the origins they may go to")
        return self

    def refusal(self, url: str) -> str | None:
        """Why the headers may not go to `url`, or None when they may."""
        if not self.headers:
            return None
        target = _origin(url)
        if self.base_url and target == _origin(self.base_url):
            return None
        hosts = {h.lower().rstrip(".") for h in self.allowed_hosts}
        if target[1] in hosts:
            return None
        if not (self.base_url or hosts):
            return UNBOUND
        bound = ", ".join(filter(None, [self.base_url, *sorted(hosts)]))
        scheme, host, port = target
        return f"{scheme}://{host}:{port} is not an origin of this connection ({bound})"


class HttpRequest(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")


class Http(Connector):
    name = "http"
    title = "HTTP"
    auth = "headers"
    description = "Call any HTTP endpoint with a JSON body."
    credentials = HttpCredentials
    actions = {"request": ActionSpec("request", "one HTTP request", HttpRequest)}
    tenant_aimed = True

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        refusal = credentials.refusal(params.url)
        if refusal is not None:
            raise PermanentError(f"http connector refused the action: {refusal}")
        # Servers that honour Idempotency-Key drop a retried request.
        headers = {"Idempotency-Key": idempotency_key, **params.headers, **credentials.headers}
        response = await self.http.call(
            "http", params.method, params.url, headers=headers, json=params.json_body
        )
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:10_000]
        return {"status": response.status_code, "body": body}


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as httpx, which makes the request, reads them."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"http connector: not a URL: {exc}") from exc
    scheme = parsed.scheme.lower()
    return scheme, parsed.host.lower().rstrip("."), parsed.port or DEFAULT_PORTS.get(scheme, 0)
