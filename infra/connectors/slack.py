"""Slack: chat.postMessage with a bot token; auth.revoke when the connection is deleted."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infra.connectors.base import ActionSpec, Connector, Strict, json_object
from infra.errors import PermanentError, TransientError

# Slack answers 200 with {"ok": false, "error": ...}; these are worth a retry.
RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error"})
# auth.revoke's answers that mean the token is already of no use: revoked as far as we care.
ALREADY_INVALID = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed"})


class SlackCredentials(Strict):
    bot_token: str = Field(min_length=1)


class PostMessage(Strict):
    channel: str = Field(min_length=1, description="channel id, e.g. C0123")
    text: str = Field(min_length=1, max_length=40_000)
    thread_ts: str | None = None


class Slack(Connector):
    name = "slack"
    title = "Slack"
    auth = "bot_token"
    revocation = "the bot token (auth.revoke)"
    description = "Post messages to Slack channels."
    credentials = SlackCredentials
    actions = {
        "post_message": ActionSpec("post_message", "chat.postMessage", PostMessage),
    }

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        response = await self.http.call(
            "slack",
            "POST",
            f"{self.base_url}/chat.postMessage",
            headers={"Authorization": f"Bearer {credentials.bot_token}"},
            json=params.model_dump(exclude_none=True),
        )
        body = json_object("slack", response)
        if not body.get("ok"):
            error = str(body.get("error", "unknown_error"))
            if error in RETRYABLE_ERRORS:
                raise TransientError(f"slack answered {error}")
            raise PermanentError(f"slack answered {error}")
        return {"channel": body.get("channel"), "ts": body.get("ts")}

    async def revoke(self, credentials: Any) -> bool:
        """auth.revoke: the token stops working at Slack."""
        response = await self.http.call(
            "slack",
            "POST",
            f"{self.base_url}/auth.revoke",
            headers={"Authorization": f"Bearer {credentials.bot_token}"},
        )
        body = json_object("slack", response)
        error = str(body.get("error", ""))
        if body.get("ok") or error in ALREADY_INVALID:
            return True
        if error in RETRYABLE_ERRORS:
            raise TransientError(f"slack answered {error}")
        raise PermanentError(f"slack answered {error or 'unknown_error'}")
