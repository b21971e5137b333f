"""Email over SMTP (the standard library's smtplib, run in a thread).

The SMTP host is the tenant's choice, so the socket is opened by the address policy
(`AddressPolicy.connect`), and errors say which step failed and the reply code, never the
server's words: a banner echoed back would make this a port scanner of whatever it can reach.
The whole exchange runs under one deadline; past it the socket is shut, which ends the thread's
blocking read.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Any

from pydantic import Field

from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import ActionSpec, Connector, Strict
from infra.errors import PermanentError, TransientError

NO_LINE_BREAK = r"^[^\r\n]*$"  # a line break in a header would forge more headers


class SmtpCredentials(Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    from_address: str = Field(min_length=3, pattern=NO_LINE_BREAK)


class SendEmail(Strict):
    to: list[str] = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=998, pattern=NO_LINE_BREAK)
    text: str = Field(max_length=1_000_000)


class _CheckedSMTP(smtplib.SMTP):
    """smtplib whose socket is opened by the address policy, to a checked address."""

    def __init__(self, policy: AddressPolicy, timeout: float) -> None:
        self._policy = policy
        self.step = "connect"
        super().__init__(timeout=timeout)  # no host: nothing is connected yet

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._policy.connect(host, port, timeout)

    def cut(self) -> None:
        """Ends a blocking read of another thread (the deadline passed)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):  # closed already
                self.sock.shutdown(socket.SHUT_RDWR)


class Email(Connector):
    name = "email"
    title = "Email (SMTP)"
    auth = "smtp"
    description = "Send plain-text email through an SMTP server."
    credentials = SmtpCredentials
    actions = {"send_email": ActionSpec("send_email", "SMTP sendmail", SendEmail)}
    tenant_aimed = True

    @property
    def timeout_s(self) -> float:
        """The connectors' one deadline (AYUSH_CONNECTOR_TIMEOUT_S), for the whole exchange."""
        return self.http.timeout_s

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        message = EmailMessage()
        try:
            message["From"] = credentials.from_address
            message["To"] = ", ".join(params.to)
            message["Subject"] = params.subject
        except ValueError as exc:  # e.g. a line break in an address
            raise PermanentError(f"invalid email header: {exc}") from exc
        # Receivers and our own logs can match a redelivery by this id.
        message["Message-ID"] = f"<{idempotency_key}@ayush>"
        message.set_content(params.text)
        policy = self.http.policy
        assert policy is not None  # tenant_aimed: Connector.__init__ makes sure
        opened: list[_CheckedSMTP] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.to_thread(self._send, policy, opened, credentials, message)
        except TimeoutError:
            for smtp in opened:
                smtp.cut()
            step = opened[0].step if opened else "connect"
            raise _failure(step, f"no answer within {self.timeout_s:g} s") from None

    def _send(
        self,
        policy: AddressPolicy,
        opened: list[_CheckedSMTP],
        credentials: SmtpCredentials,
        message: EmailMessage,
    ) -> dict[str, Any]:
        smtp = _CheckedSMTP(policy, self.timeout_s)
        opened.append(smtp)
        try:
            code, _ = smtp.connect(credentials.host, credentials.port)
            if code != 220:  # what smtplib.SMTP(host) checks, without keeping the banner
                raise smtplib.SMTPConnectError(code, b"")
            if credentials.starttls:
                smtp.step = "starttls"
                smtp.starttls(context=ssl.create_default_context())
            if credentials.username:
                smtp.step = "login"
                smtp.login(credentials.username, credentials.password or "")
            smtp.step = "send"
            refused = smtp.send_message(message)
            smtp.step = "sent"
        except (PermanentError, TransientError):
            raise  # the address policy's own words
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code < 0:  # not an SMTP reply at all
                raise PermanentError(f"smtp server at {smtp.step}: not an SMTP reply") from exc
            text = f"smtp server answered {exc.smtp_code} at {smtp.step}"
            if 400 <= exc.smtp_code < 500:
                raise TransientError(text) from exc
            raise PermanentError(text) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise PermanentError(f"smtp server refused every recipient {codes}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _failure(smtp.step, type(exc).__name__) from exc
        finally:
            if smtp.step != "sent":
                smtp.close()
        try:
            smtp.quit()  # the message is accepted: a failed goodbye changes nothing
        except (smtplib.SMTPException, OSError):
            smtp.close()
        return {"message_id": message["Message-ID"], "refused": sorted(refused)}


def _failure(step: str, what: str) -> TransientError | PermanentError:
    """Before the message is sent, trying again is safe; during it, the outcome is unknown."""
    if step == "send":
        return PermanentError(f"smtp failed while sending ({what}); outcome unknown, not retried")
    return TransientError(f"smtp failed at {step} ({what})")
