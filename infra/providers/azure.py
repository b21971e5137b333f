"""Azure OpenAI: OpenAI's wire on a deployment's URL, with `api-version` and Azure's sign-in.

A call goes to `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
(or `/embeddings`) through the same raw HTTP client as OpenAI's (openai_http.py);
only the URL, the credentials header and the content filter's refusals differ.
Configured by the vendor's usual variables when the routing file does not say:
AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION, and AZURE_OPENAI_API_KEY (sent as
`api-key`) or AZURE_OPENAI_AD_TOKEN (an Entra ID token, sent as a bearer token;
this process does not mint or refresh it).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

import orjson

from infra.errors import PermanentError, TransientError
from infra.providers.openai import OpenAIProvider
from infra.providers.openai_http import Wire

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
API_VERSION_ENV = "OPENAI_API_VERSION"
API_KEY_ENV = "AZURE_OPENAI_API_KEY"
AD_TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"


def azure_wire(
    deployment: str,
    *,
    endpoint: str | None = None,
    api_version: str | None = None,
    api_key: str | None = None,
    ad_token: str | None = None,
) -> Wire:
    """The deployment's base URL, its `api-version` and credentials; PermanentError if missing."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    api_version = api_version or os.environ.get(API_VERSION_ENV)
    api_key = api_key or os.environ.get(API_KEY_ENV)
    ad_token = ad_token or os.environ.get(AD_TOKEN_ENV)
    missing = [
        name
        for name, value in (
            (f"{ENDPOINT_ENV} (or base_url)", endpoint),
            (f"{API_VERSION_ENV} (or api_version)", api_version),
            (f"{API_KEY_ENV} or {AD_TOKEN_ENV} (or api_key)", api_key or ad_token),
        )
        if not value
    ]
    if missing:
        raise PermanentError(f"azure deployment {deployment!r} needs {', '.join(missing)}")
    assert endpoint is not None and api_version is not None
    auth = {"api-key": api_key} if api_key else {"Authorization": f"Bearer {ad_token}"}
    base = f"{endpoint.rstrip('/')}/openai/deployments/{urllib.parse.quote(deployment, safe='')}"
    return Wire(base, auth, "?" + urllib.parse.urlencode({"api-version": api_version}))


def content_filter_refusal(vendor: str, status: int, body: bytes) -> PermanentError | None:
    """Azure's content filter refusing a prompt (400, code content_filter), said plainly."""
    if status != 400:
        return None
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    inner = error.get("innererror") or {}
    if "content_filter" not in (error.get("code"), inner.get("code")):
        return None
    categories = sorted(
        name
        for name, verdict in (inner.get("content_filter_result") or {}).items()
        if isinstance(verdict, dict) and verdict.get("filtered")
    )
    which = f" ({', '.join(categories)})" if categories else ""
    return PermanentError(
        f"{vendor}: Azure's content filter refused the prompt{which}; "
        "retrying the same request cannot help",
        status=400,
    )


class AzureOpenAIProvider(OpenAIProvider):
    """Chat completions on an Azure OpenAI deployment (streaming, tools, images, JSON)."""

    def refusal(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> TransientError | PermanentError:
        return content_filter_refusal(self.name, status, body) or super().refusal(
            status, body, headers
        )
