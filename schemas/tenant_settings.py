"""A tenant's settings as the API shows and changes them, and what a browser origin is."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.request import RequestModel

ANY_ORIGIN = "*"
MAX_ORIGINS = 100
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9._~-]+|[0-9a-f:.]+")  # a name, an IPv4 or an IPv6 address
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ORIGIN_CHARS = 300


def normalize_origin(value: str) -> str:
    """An origin as a browser sends it (`scheme://host[:port]`, lower case, no default port),
    or ValueError. `*` stands for any origin. Extension origins (`chrome-extension://id`)
    are origins too."""
    text = value.strip()
    if text == ANY_ORIGIN:
        return text
    if len(text) > MAX_ORIGIN_CHARS:
        raise ValueError(f"an origin has at most {MAX_ORIGIN_CHARS} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an origin: {exc}") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not _SCHEME.fullmatch(scheme) or not _HOST.fullmatch(host) or "://" not in text:
        raise ValueError(f"{value!r} is not an origin: expected scheme://host[:port]")
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{value!r} is not an origin: no path, query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} is not an origin: no user or password")
    if ":" in host:  # an IPv6 address keeps its brackets in an origin
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origins(values: list[str]) -> list[str]:
    """Each origin normalized, in order, once; `*` only alone."""
    origins = list(dict.fromkeys(normalize_origin(v) for v in values))
    if ANY_ORIGIN in origins and len(origins) > 1:
        raise ValueError("'*' (any origin) is the only value when given")
    return origins


class TenantSettingsIn(RequestModel):
    """The settings a PUT names are changed; the others are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    cors_origins: list[str] | None = Field(
        default=None,
        max_length=MAX_ORIGINS,
        description="Browser origins (scheme://host[:port]) that may call the API with this"
        ' tenant\'s credentials, or ["*"] for any origin (then without credentials).',
    )
    response_cache: bool | None = Field(
        default=None, description="Answer identical requests from the response cache."
    )
    semantic_cache: bool | None = Field(
        default=None,
        description="Answer questions of the same meaning from the semantic cache"
        " (and identical ones from the response cache).",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalize_origins(value)


class TenantSettingsView(BaseModel):
    cors_origins: list[str]
    response_cache: bool
    semantic_cache: bool = False
