"""The email connector reaches only what the address policy allows, and never repeats what
a server said: it must not work as a scanner of the network it runs in."""

from __future__ import annotations

import time

import pytest

from infra.connectors import CATALOG
from infra.connectors.address_policy import AddressPolicy
from infra.connectors.base import VendorHttp
from infra.connectors.email import Email, SendEmail, SmtpCredentials
from infra.errors import PermanentError, TransientError
from tests.fakes.hostile import BannerServer

SECRET_BANNER = b"SSH-2.0-OpenSSH_9.6 build-host-7.corp.internal\r\n"
MESSAGE = SendEmail(to=["ops@example.test"], subject="hello", text="body")


async def send(policy: AddressPolicy, port: int, timeout_s: float = 5) -> dict[str, object]:
    http = VendorHttp(timeout_s, policy)
    email = Email(http)
    credentials = SmtpCredentials(
        host="127.0.0.1", port=port, starttls=False, from_address="bot@ayush.test"
    )
    try:
        return await email.run("send_email", credentials, MESSAGE, "key-1")
    finally:
        await http.close()


async def test_smtp_to_a_private_address_is_refused_before_connecting() -> None:
    with BannerServer(SECRET_BANNER) as server:
        with pytest.raises(PermanentError, match=r"refused 127\.0\.0\.1 .*not a public address"):
            await send(AddressPolicy(), server.port)
        assert server.connections == 0


@pytest.mark.parametrize(
    "banner",
    [SECRET_BANNER, b"554 build-host-7.corp.internal ESMTP Postfix (Debian)\r\n"],
)
async def test_smtp_errors_never_echo_the_server_banner(banner: bytes) -> None:
    with BannerServer(banner) as server:
        with pytest.raises(PermanentError) as failed:
            await send(AddressPolicy.parse(False, "127.0.0.1"), server.port)
        assert server.connections == 1
    assert "build-host" not in str(failed.value) and "OpenSSH" not in str(failed.value)
    assert "at connect" in str(failed.value)


async def test_trickling_smtp_server_is_cut_at_the_deadline() -> None:
    with BannerServer(b"220-hello\r\n", trickle=True) as server:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"at connect \(no answer within 1 s\)"):
            await send(AddressPolicy.parse(False, "127.0.0.1"), server.port, timeout_s=1)
        assert time.monotonic() - started < 3


def test_connectors_aimed_by_tenants_need_an_address_policy() -> None:
    aimable = {"host", "url", "base_url", "port", "allowed_hosts"}
    for connector in CATALOG.values():
        fields = set(connector.credentials.model_fields)
        for spec in connector.actions.values():
            fields |= set(spec.params.model_fields)
        # A connector whose target a tenant can name is built only with the policy.
        assert connector.tenant_aimed == bool(fields & aimable), connector.name
        if connector.tenant_aimed:
            with pytest.raises(ValueError, match="needs an address policy"):
                connector(VendorHttp(1))


def test_email_headers_with_a_line_break_are_refused_as_params() -> None:
    with pytest.raises(ValueError, match="subject"):
        SendEmail(to=["a@example.test"], subject="hi\nBcc: all@example.test", text="x")
