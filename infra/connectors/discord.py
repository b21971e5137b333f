"""Discord: a message through an incoming webhook."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infra.connectors.base import ActionSpec, Connector, Strict, json_object


class DiscordCredentials(Strict):
    webhook_id: str = Field(min_length=1)
    webhook_token: str = Field(min_length=1)


class WebhookMessage(Strict):
    content: str = Field(min_length=1, max_length=2000)
    username: str | None = Field(default=None, max_length=80)


class Discord(Connector):
    name = "discord"
    title = "Discord"
    auth = "webhook"
    description = "Send messages to a Discord channel's webhook."
    credentials = DiscordCredentials
    actions = {"send_message": ActionSpec("send_message", "Execute Webhook", WebhookMessage)}

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        url = f"{self.base_url}/webhooks/{credentials.webhook_id}/{credentials.webhook_token}"
        # wait=true: Discord answers with the created message instead of 204.
        response = await self.http.call(
            "discord", "POST", f"{url}?wait=true", json=params.model_dump(exclude_none=True)
        )
        body = json_object("discord", response) if response.content else {}
        return {"id": body.get("id"), "channel_id": body.get("channel_id")}
