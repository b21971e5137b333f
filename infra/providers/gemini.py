"""Google's Gemini, through the official `google-genai` SDK (its async client).

Two backends, one wire format: the Gemini Developer API with a key
(GEMINI_API_KEY, else GOOGLE_API_KEY; base URL GEMINI_BASE_URL), and Vertex
AI with a project and location (a deployment's `project`/`location`, else
GOOGLE_CLOUD_PROJECT/GOOGLE_CLOUD_LOCATION) and Application Default
Credentials. The SDK sends its requests through an httpx client we own, so
its transport and errors are the same whichever optional HTTP library is
installed, and it never retries on its own: the gateway does.

The request's translation to Gemini's shapes is in gemini_wire.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import google.auth.exceptions
import httpx
from google import genai
from google.genai import errors, types

from infra.errors import PermanentError, TransientError
from infra.providers import gemini_wire
from infra.providers.base import ChatRequest, Completion, OnDelta
from infra.providers.http_errors import RETRYABLE_STATUS, retry_after_seconds

VENDOR = "gemini"


def make_client(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    project: str | None = None,
    location: str | None = None,
    timeout_s: float = 600.0,
) -> tuple[genai.Client, httpx.AsyncClient]:
    """An SDK client for the Developer API (a key) or Vertex AI (a project); and its transport.

    Vertex when a project is given, or when no key is and GOOGLE_CLOUD_PROJECT is set.
    """
    key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
    vertex = project is not None or (not key and bool(os.environ.get("GOOGLE_CLOUD_PROJECT")))
    transport = httpx.AsyncClient(timeout=timeout_s)
    options = types.HttpOptions(
        base_url=base_url or (None if vertex else os.environ.get("GEMINI_BASE_URL")),
        timeout=int(timeout_s * 1000),  # milliseconds
        httpx_async_client=transport,
    )
    if vertex:
        client = genai.Client(
            vertexai=True,
            project=project or os.environ.get("GOOGLE_CLOUD_PROJECT"),
            location=location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global",
            http_options=options,
        )
    else:
        # The SDK refuses to start without a key; a call without one fails as a 4xx.
        client = genai.Client(api_key=key or "not-set", http_options=options)
    return client, transport


class GeminiProvider:
    """Chat with Gemini models; deltas as the stream brings them."""

    def __init__(
        self,
        *,
        name: str = VENDOR,
        api_key: str | None = None,
        base_url: str | None = None,
        project: str | None = None,
        location: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.name = name
        self._client, self._transport = make_client(
            api_key=api_key,
            base_url=base_url,
            project=project,
            location=location,
            timeout_s=timeout_s,
        )

    async def stream_chat(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        contents, config = gemini_wire.request_params(request)
        reading = gemini_wire.Reading()
        with gemini_errors(self.name):
            stream = await self._client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=config
            )
        chunks = aiter(stream)
        while True:
            # Only the SDK's own work is translated: on_delta's errors are the caller's.
            with gemini_errors(self.name):
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
            text = reading.add(chunk)
            if text:
                await on_delta(text)
        return reading.completion(request)

    async def close(self) -> None:
        await self._client.aio.aclose()
        await self._transport.aclose()


@contextmanager
def gemini_errors(vendor: str) -> Iterator[None]:
    """The SDK's and its transport's exceptions, as TransientError or PermanentError."""
    try:
        yield
    except errors.APIError as exc:
        raise _from_api_error(vendor, exc) from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"{vendor}: timed out", status=504) from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{vendor}: {type(exc).__name__}: {exc}", status=502) from exc
    except google.auth.exceptions.TransportError as exc:
        raise TransientError(f"{vendor}: credentials: {exc}", status=502) from exc
    except google.auth.exceptions.GoogleAuthError as exc:
        raise PermanentError(f"{vendor}: credentials: {exc}", status=401) from exc
    except errors.UnknownApiResponseError as exc:  # an answer that is not JSON
        raise PermanentError(f"{vendor}: {exc}", status=502) from exc
    except (ValueError, TypeError) as exc:  # the SDK's checks of a request
        raise PermanentError(f"{vendor}: {exc}", status=400) from exc
    except RuntimeError as exc:  # e.g. no credentials to take a token from
        raise PermanentError(f"{vendor}: {exc}", status=502) from exc


def _from_api_error(vendor: str, exc: errors.APIError) -> TransientError | PermanentError:
    code = int(exc.code or 502)
    text = f"{vendor} answered {code}: {exc.message or exc.status or exc.details}"
    if code in RETRYABLE_STATUS or code >= 500:
        headers = getattr(exc.response, "headers", None)
        wait = retry_after_seconds(_lower(headers)) if headers is not None else None
        if wait is None:
            wait = retry_delay(exc.details)
        return TransientError(text, retry_after=wait, status=code)
    return PermanentError(text, status=code)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_delay(body: Any) -> float | None:
    """The `google.rpc.RetryInfo` detail of an error body ("retryDelay": "7s"), if any."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("rpc.RetryInfo"):
            found = _DURATION.match(str(detail.get("retryDelay", "")))
            if found:
                return float(found.group(1))
    return None
