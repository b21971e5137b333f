"""Telegram: sendMessage with a bot token."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infra.connectors.base import ActionSpec, Connector, Strict, json_object


class TelegramCredentials(Strict):
    bot_token: str = Field(min_length=1)


class SendMessage(Strict):
    chat_id: int | str
    text: str = Field(min_length=1, max_length=4096)
    parse_mode: str | None = None


class Telegram(Connector):
    name = "telegram"
    title = "Telegram"
    auth = "bot_token"
    description = "Send messages as a Telegram bot."
    credentials = TelegramCredentials
    actions = {"send_message": ActionSpec("send_message", "sendMessage", SendMessage)}

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        response = await self.http.call(
            "telegram",
            "POST",
            f"{self.base_url}/bot{credentials.bot_token}/sendMessage",
            json=params.model_dump(exclude_none=True),
        )
        result = json_object("telegram", response).get("result") or {}
        return {"message_id": result.get("message_id")}
