"""Webhook signatures against the vendors' published examples, and forged, replayed, stale ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from producers.ingress.signatures import SignatureError, verify

# GitHub docs, "Validating webhook deliveries": the example secret, payload and signature.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Slack docs, "Verifying requests from Slack": the example signing secret, request and signature.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

# Standard Webhooks specification: the example secret, message and signature.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TS = "1614265330"
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def stripe_header(secret: str, body: bytes, timestamp: int) -> str:
    """Stripe's documented scheme: v1 = hex HMAC-SHA256(secret, "<t>.<body>")."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def test_github_docs_example_verifies_and_a_forgery_does_not() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    verify("github", GITHUB_SECRET, headers, GITHUB_BODY, now=time.time())
    with pytest.raises(SignatureError):
        verify("github", GITHUB_SECRET, headers, b"Hello, World?", now=time.time())
    with pytest.raises(SignatureError):
        verify("github", "another secret", headers, GITHUB_BODY, now=time.time())
    with pytest.raises(SignatureError, match="missing"):
        verify("github", GITHUB_SECRET, {}, GITHUB_BODY, now=time.time())


def test_slack_docs_example_verifies_inside_the_window_only() -> None:
    headers = {"X-Slack-Request-Timestamp": SLACK_TS, "X-Slack-Signature": SLACK_SIGNATURE}
    at_send = int(SLACK_TS) + 10
    verify("slack", SLACK_SECRET, headers, SLACK_BODY, now=at_send)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("slack", SLACK_SECRET, headers, SLACK_BODY, now=int(SLACK_TS) + 301)
    with pytest.raises(SignatureError):
        verify("slack", SLACK_SECRET, headers, SLACK_BODY + b"&x=1", now=at_send)
    # A replay with a fresh timestamp but the old signature is refused too.
    replay = {**headers, "X-Slack-Request-Timestamp": str(at_send)}
    with pytest.raises(SignatureError, match="mismatch"):
        verify("slack", SLACK_SECRET, replay, SLACK_BODY, now=at_send)


def test_standard_webhooks_spec_example_verifies() -> None:
    headers = {
        "webhook-id": STANDARD_ID,
        "webhook-timestamp": STANDARD_TS,
        "webhook-signature": f"v1,bm90IGl0 {STANDARD_SIGNATURE}",  # rotation: several
    }
    verify("standard", STANDARD_SECRET, headers, STANDARD_BODY, now=int(STANDARD_TS))
    with pytest.raises(SignatureError, match="tolerance"):
        verify("standard", STANDARD_SECRET, headers, STANDARD_BODY, now=int(STANDARD_TS) + 600)
    with pytest.raises(SignatureError, match="tolerance"):  # from the future
        verify("standard", STANDARD_SECRET, headers, STANDARD_BODY, now=int(STANDARD_TS) - 600)
    other_id = {**headers, "webhook-id": "msg_other"}
    with pytest.raises(SignatureError, match="mismatch"):
        verify("standard", STANDARD_SECRET, other_id, STANDARD_BODY, now=int(STANDARD_TS))
    v2_only = {**headers, "webhook-signature": STANDARD_SIGNATURE.replace("v1,", "v2,")}
    with pytest.raises(SignatureError):
        verify("standard", STANDARD_SECRET, v2_only, STANDARD_BODY, now=int(STANDARD_TS))


def test_stripe_scheme_tolerance_and_multiple_signatures() -> None:
    secret, body, now = (
        "whsec_test_secret",
        b'{"id":"evt_1","type":"charge.succeeded"}',
        1_700_000_000,
    )
    header = stripe_header(secret, body, now - 299)
    verify("stripe", secret, {"Stripe-Signature": header}, body, now=now)
    rolled = f"{header},v1={'0' * 64},v0=ignored"
    verify("stripe", secret, {"Stripe-Signature": rolled}, body, now=now)
    with pytest.raises(SignatureError, match="tolerance"):
        verify("stripe", secret, {"Stripe-Signature": stripe_header(secret, body, now - 301)},
               body, now=now)  # fmt: skip
    with pytest.raises(SignatureError, match="mismatch"):
        verify("stripe", "whsec_other", {"Stripe-Signature": header}, body, now=now)
    with pytest.raises(SignatureError, match="no timestamp"):
        verify("stripe", secret, {"Stripe-Signature": header.split(",")[1]}, body, now=now)


def test_generic_hmac_reads_the_configured_header() -> None:
    body = b'{"type":"build.done"}'
    digest = hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    for value in (digest, f"sha256={digest}", digest.upper()):
        verify("hmac", "s3cret-value", {"X-Acme-Sig": value}, body, now=0,
               signature_header="X-Acme-Sig")  # fmt: skip
    with pytest.raises(SignatureError):
        verify("hmac", "s3cret-value", {"X-Signature": digest}, body, now=0,
               signature_header="X-Acme-Sig")  # fmt: skip
    forged = base64.b16encode(b"x" * 32).decode().lower()
    with pytest.raises(SignatureError):
        verify("hmac", "s3cret-value", {"X-Acme-Sig": forged}, body, now=0,
               signature_header="X-Acme-Sig")  # fmt: skip
