"""Generic HTTP: any method, URL, headers and JSON body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infra.connectors.base import ActionSpec, Connector


class HttpCredentials(BaseModel):
    """Headers that carry the secret (e.g. Authorization), added to every request."""

    model_config = ConfigDict(extra="forbid")

    headers: dict[str, str] = Field(default_factory=dict)


class HttpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://", max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")


class Http(Connector):
    name = "http"
    description = "Call any HTTP endpoint with a JSON body."
    credentials = HttpCredentials
    actions = {"request": ActionSpec("request", "one HTTP request", HttpRequest)}

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
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
