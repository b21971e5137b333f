"""The one small interface every connector implements, and its HTTP edge.

A connector is one file: a credentials model, typed parameter models per
action, and `run`. Vendor answers become TransientError (429, 5xx, refused
connections: retried, honouring the vendor's wait) or PermanentError (401,
404, bad input: the job fails at once with the vendor's words).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict

from infra.connectors.address_policy import AddressPolicy, CheckedTransport
from infra.errors import PermanentError, TransientError
from infra.providers.http_errors import retry_after_seconds

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 1024 * 1024


class Strict(BaseModel):
    """Base of the credentials and parameter models: an unknown field is refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    params: type[BaseModel]


class Connector:
    """Base of the connectors. Subclasses set the class attributes and `run`.

    A connector whose target the tenant chooses (a URL, an SMTP host) says so with
    `tenant_aimed`; it is then only built on a `VendorHttp` with an address policy, whose
    `policy` it also uses for any socket it opens itself.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    # How the credentials authenticate: bot_token, token, webhook, smtp, headers …
    auth: ClassVar[str]
    credentials: ClassVar[type[BaseModel]]
    actions: ClassVar[Mapping[str, ActionSpec]]
    tenant_aimed: ClassVar[bool] = False
    # What `revoke` asks the vendor to invalidate when a connection is deleted ("" for nothing).
    revocation: ClassVar[str] = ""

    def __init__(self, http: VendorHttp, base_url: str = "") -> None:
        if self.tenant_aimed and http.policy is None:
            raise ValueError(f"the {self.name} connector needs an address policy")
        self.http = http
        self.base_url = base_url.rstrip("/")

    @classmethod
    def action(cls, name: str) -> ActionSpec | None:
        """The action called `name`, or None. A connector whose actions are not known in
        advance (an MCP server's tools) answers for any name it may have."""
        return cls.actions.get(name)

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def revoke(self, credentials: Any) -> bool:
        """Ask the vendor to invalidate the credentials, where it offers that (a connection
        is being deleted). True when the vendor revoked them (or says they are already
        invalid); False when there is nothing to revoke. Vendor failures raise as `run`'s do."""
        return False


class VendorHttp:
    """httpx, with vendor answers translated into our two error kinds.

    Each call runs under one deadline (`timeout_s`, from the connection to the last byte),
    and an answer is read as a stream up to `max_response_bytes`: a huge or trickling answer
    costs at most that much memory and time.
    """

    def __init__(
        self,
        timeout_s: float,
        policy: AddressPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """With a `policy`, only addresses it allows are connected to (and redirected to)."""
        self.policy = policy
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        # Redirects are not followed: that would send the credentials' headers wherever
        # the answer points.
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            transport=CheckedTransport(policy) if policy else None,
        )

    async def call(
        self,
        vendor: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        sent = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal sent
            sent = sent or event.endswith("send_request_headers.started")

        request = self._client.build_request(
            method, url, headers=headers, json=json, extensions={"trace": trace}
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._exchange(vendor, request)
        except TimeoutError:
            if not sent:
                raise TransientError(
                    f"{vendor} unreachable: no connection within {self.timeout_s:g} s"
                ) from None
            raise PermanentError(
                f"{vendor} did not answer within {self.timeout_s:g} s; outcome unknown, not retried"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the vendor: safe to try again.
            raise TransientError(f"{vendor} unreachable: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            # The request may have been acted on; retrying could act twice.
            raise PermanentError(
                f"{vendor} did not answer ({type(exc).__name__}); outcome unknown, not retried"
            ) from exc
        if response.status_code >= 400:
            raise vendor_error(vendor, response)
        if self.policy is not None and response.has_redirect_location:
            # Not followed here, but the answer may be followed by whoever reads the result.
            await self.policy.check_redirect(response.url, response.headers["location"])
        return response

    async def _exchange(self, vendor: str, request: httpx.Request) -> httpx.Response:
        """The answer with its body read, at most `max_response_bytes` of it."""
        streamed = await self._client.send(request, stream=True)
        body = bytearray()
        try:
            async for chunk in streamed.aiter_bytes():
                body += chunk
                if len(body) > self.max_response_bytes:
                    break
        finally:
            await streamed.aclose()
        status = streamed.status_code
        if len(body) > self.max_response_bytes and status < 400:
            raise PermanentError(
                f"{vendor} answered {status} with more than {self.max_response_bytes} bytes; "
                "the rest was not read (the request may have been acted on)"
            )
        # The body is decoded already: the headers that described its transfer go.
        headers = [
            (name, value)
            for name, value in streamed.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            status,
            headers=headers,
            content=bytes(body[: self.max_response_bytes]),
            request=request,
        )

    async def close(self) -> None:
        await self._client.aclose()


def json_object(vendor: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; an answer of any other shape fails the action, saying so."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PermanentError(
            f"{vendor} answered {response.status_code} with a body that is not a JSON object; "
            "the request may have been acted on, so it is not retried"
        )
    return body


def vendor_error(vendor: str, response: httpx.Response) -> TransientError | PermanentError:
    status = response.status_code
    text = f"{vendor} answered {status}: {response.text[:500]}"
    wait = (
        retry_after_seconds(response.headers)
        or _reset_wait(response.headers)
        or _body_wait(response)
    )
    if status in RETRYABLE or (
        status == 403 and response.headers.get("x-ratelimit-remaining") == "0"
    ):
        return TransientError(text, retry_after=wait, status=status)
    return PermanentError(text, status=status)


def _reset_wait(headers: Mapping[str, str]) -> float | None:
    """GitHub's primary rate limit: wait until `x-ratelimit-reset` (epoch seconds)."""
    reset = headers.get("x-ratelimit-reset")
    if headers.get("x-ratelimit-remaining") != "0" or not reset:
        return None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


def _body_wait(response: httpx.Response) -> float | None:
    """Telegram (`parameters.retry_after`) and Discord (`retry_after`) say it in the body."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    value = (body.get("parameters") or {}).get("retry_after", body.get("retry_after"))
    return float(value) if isinstance(value, int | float) else None
