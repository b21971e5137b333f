"""Email over SMTP (the standard library's smtplib, run in a thread)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.connectors.base import ActionSpec, Connector
from infra.errors import PermanentError, TransientError


class SmtpCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    from_address: str = Field(min_length=3)


class SendEmail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[str] = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=998)
    text: str = Field(max_length=1_000_000)


class Email(Connector):
    name = "email"
    description = "Send plain-text email through an SMTP server."
    credentials = SmtpCredentials
    actions = {"send_email": ActionSpec("send_email", "SMTP sendmail", SendEmail)}
    timeout_s: float = 15.0

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        message = EmailMessage()
        message["From"] = credentials.from_address
        message["To"] = ", ".join(params.to)
        message["Subject"] = params.subject
        # Receivers and our own logs can match a redelivery by this id.
        message["Message-ID"] = f"<{idempotency_key}@ayush>"
        message.set_content(params.text)
        return await asyncio.to_thread(self._send, credentials, message)

    def _send(self, credentials: SmtpCredentials, message: EmailMessage) -> dict[str, Any]:
        try:
            with smtplib.SMTP(credentials.host, credentials.port, timeout=self.timeout_s) as smtp:
                if credentials.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if credentials.username:
                    smtp.login(credentials.username, credentials.password or "")
                refused = smtp.send_message(message)
        except (ConnectionRefusedError, smtplib.SMTPConnectError) as exc:
            raise TransientError(f"smtp unreachable: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            text = f"smtp answered {exc.smtp_code}: {exc.smtp_error!r}"
            if 400 <= exc.smtp_code < 500:
                raise TransientError(text) from exc
            raise PermanentError(text) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise PermanentError(f"smtp failed: {type(exc).__name__}: {exc}") from exc
        return {"message_id": message["Message-ID"], "refused": sorted(refused)}
