"""Sends one signed webhook to a subscriber's URL and says what happened, never raising.

Every connection goes through the address policy (checked at connect, so a DNS answer that
changed since the subscription was made cannot reach a private address), redirects are not
followed, and the whole exchange runs under one deadline. Only the answer's first bytes are
read: the delivery log keeps an excerpt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import httpx

from infra.connectors.address_policy import AddressPolicy, CheckedTransport
from infra.db.outbound_webhooks import Attempt
from infra.errors import PermanentError

EXCERPT_BYTES = 1000


class WebhookSender:
    def __init__(self, policy: AddressPolicy, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, transport=CheckedTransport(policy)
        )

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Attempt:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_s):
                request = self._client.build_request("POST", url, headers=headers, content=body)
                response = await self._client.send(request, stream=True)
                try:
                    excerpt = bytearray()
                    async for chunk in response.aiter_bytes():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Attempt(None, took(), None, f"no answer within {self.timeout_s:g} s")
        except PermanentError as refused:  # the address policy
            return Attempt(None, took(), None, str(refused)[:1000])
        except httpx.HTTPError as exc:
            return Attempt(None, took(), None, f"{type(exc).__name__}: {exc}"[:1000])
        text = bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", "replace")
        return Attempt(response.status_code, took(), text, None)

    async def close(self) -> None:
        await self._client.aclose()
