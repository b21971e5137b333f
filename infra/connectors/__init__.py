"""Connectors to third-party services, one file each, behind `base.Connector`."""

from __future__ import annotations

from typing import Any

from infra.connectors.base import Connector, VendorHttp
from infra.connectors.discord import Discord
from infra.connectors.email import Email
from infra.connectors.github import GitHub
from infra.connectors.http import Http
from infra.connectors.mcp import Mcp
from infra.connectors.notion import Notion
from infra.connectors.slack import Slack
from infra.connectors.telegram import Telegram
from infra.settings import Settings

CATALOG: dict[str, type[Connector]] = {
    c.name: c for c in (Slack, Discord, Telegram, GitHub, Notion, Email, Http, Mcp)
}


def base_urls(settings: Settings) -> dict[str, str]:
    """Each vendor connector's API base URL (the settings point them at fakes in tests)."""
    return {
        "slack": settings.slack_api_url,
        "discord": settings.discord_api_url,
        "telegram": settings.telegram_api_url,
        "github": settings.github_api_url,
        "notion": settings.notion_api_url,
    }


def build_connectors(
    settings: Settings, http: VendorHttp, open_http: VendorHttp
) -> dict[str, Connector]:
    """`open_http` serves the connectors whose targets tenants choose: it checks addresses."""
    urls = base_urls(settings)
    return {
        name: cls(open_http if cls.tenant_aimed else http, urls.get(name, ""))
        for name, cls in CATALOG.items()
    }


def build_revoker(settings: Settings, name: str, http: VendorHttp) -> Connector | None:
    """The connector that revokes a deleted connection's credentials; None when its vendor
    offers no revocation (a tenant-aimed connector never does: nothing to tell a vendor)."""
    cls = CATALOG.get(name)
    if cls is None or not cls.revocation or cls.tenant_aimed:
        return None
    return cls(http, base_urls(settings).get(name, ""))


def describe() -> list[dict[str, Any]]:
    """Every connector: its title, how it authenticates, whether deleting a connection
    revokes its credentials at the vendor, its credentials JSON schema, and its actions with
    their parameter JSON schemas."""
    return [
        {
            "name": cls.name,
            "title": cls.title,
            "description": cls.description,
            "auth": cls.auth,
            "revocable": bool(cls.revocation),
            "revocation": cls.revocation or None,
            "credentials_schema": cls.credentials.model_json_schema(),
            "actions": [
                {
                    "name": spec.name,
                    "description": spec.description,
                    "params_schema": spec.params.model_json_schema(by_alias=True),
                }
                for spec in cls.actions.values()
            ],
        }
        for cls in CATALOG.values()
    ]
