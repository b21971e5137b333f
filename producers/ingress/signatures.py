"""Webhook signatures, checked exactly as each source documents them.

Every check runs on the raw request bytes (never re-serialized JSON) and
compares with `hmac.compare_digest`, so timing says nothing about how much of
a forged signature was right. Timestamps outside the source's window are
refused, which stops replays of an old, validly signed delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

TOLERANCE_S = 300  # Stripe's default; Slack's and Standard Webhooks' five minutes


class SignatureError(Exception):
    """The delivery is not from the source: missing, malformed, wrong or stale signature."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _fresh(timestamp: str, now: float, tolerance_s: int = TOLERANCE_S) -> None:
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise SignatureError("malformed timestamp") from exc
    if abs(now - sent) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance window")


def _require(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def github(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`."""
    given = _require(headers, "x-hub-signature-256")
    expected = "sha256=" + _hmac(secret.encode(), body).hex()
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise SignatureError("signature mismatch")


def stripe(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """`Stripe-Signature: t=<ts>,v1=<hex HMAC(secret, "<ts>." + body)>[,v1=…]`."""
    timestamp, candidates = "", []
    for item in _require(headers, "stripe-signature").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if not timestamp or not candidates:
        raise SignatureError("no timestamp or no v1 signature")
    expected = _hmac(secret.encode(), timestamp.encode() + b"." + body).hex().encode()
    if not _any_equal(expected, [c.encode() for c in candidates]):
        raise SignatureError("signature mismatch")
    _fresh(timestamp, now)


def slack(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """`X-Slack-Signature: v0=<hex HMAC(secret, "v0:<ts>:" + body)>`, ts within 5 minutes."""
    timestamp = _require(headers, "x-slack-request-timestamp")
    given = _require(headers, "x-slack-signature")
    _fresh(timestamp, now)
    basestring = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + _hmac(secret.encode(), basestring).hex()
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise SignatureError("signature mismatch")


def standard(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Standard Webhooks: `webhook-signature: v1,<base64 HMAC(key, "id.ts.body")>` …

    The secret is `whsec_` + base64 of the key; several space-separated
    signatures may be sent while a secret rotates.
    """
    msg_id = _require(headers, "webhook-id")
    timestamp = _require(headers, "webhook-timestamp")
    _fresh(timestamp, now)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise SignatureError("endpoint secret is not base64") from exc
    content = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(_hmac(key, content))
    candidates = []
    for entry in _require(headers, "webhook-signature").split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1":
            candidates.append(signature.encode())
    if not _any_equal(expected, candidates):
        raise SignatureError("signature mismatch")


def generic_hmac(secret: str, header: str, headers: Mapping[str, str], body: bytes) -> None:
    """Hex HMAC-SHA256 of the body in a configurable header, `sha256=` prefix optional."""
    given = _require(headers, header.lower()).strip().removeprefix("sha256=")
    expected = _hmac(secret.encode(), body).hex()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise SignatureError("signature mismatch")


def verify(
    source: str,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    signature_header: str = "X-Signature",
) -> None:
    """Raise SignatureError unless the delivery is signed by `secret` as `source` signs."""
    headers = {name.lower(): value for name, value in headers.items()}
    if source == "github":
        github(secret, headers, body)
    elif source == "stripe":
        stripe(secret, headers, body, now)
    elif source == "slack":
        slack(secret, headers, body, now)
    elif source == "standard":
        standard(secret, headers, body, now)
    elif source == "hmac":
        generic_hmac(secret, signature_header, headers, body)
    else:
        raise SignatureError(f"unknown source {source!r}")


def _any_equal(expected: bytes, candidates: list[bytes]) -> bool:
    # Compare against every candidate, so the count of checks does not depend on which matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched
