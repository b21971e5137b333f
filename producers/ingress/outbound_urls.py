"""URLs a tenant gives us to call (outbound webhooks, sign-in key sets): refused at once,
naming the field, when the outbound address policy would not let us reach them."""

from __future__ import annotations

import httpcore
import httpx

from infra.connectors.address_policy import AddressPolicy
from infra.errors import PermanentError
from producers.ingress.actions import invalid


async def check_url(url: str, policy: AddressPolicy, field: str) -> None:
    """Refuses (422 naming `field`) a URL the outbound address policy would not reach."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise invalid(field, "not a URL") from exc
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise invalid(field, "an http(s) URL with a host is needed")
    try:
        await policy.resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except PermanentError as exc:
        raise invalid(field, str(exc)) from exc
    except httpcore.ConnectError as exc:
        raise invalid(field, f"{parsed.host} does not resolve") from exc
