"""Notion: create a page under a page or in a database."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from infra.connectors.base import ActionSpec, Connector, Strict, json_object

NOTION_VERSION = "2022-06-28"


class NotionCredentials(Strict):
    token: str = Field(min_length=1)


class CreatePage(Strict):
    parent_page_id: str | None = None
    database_id: str | None = None
    title: str = Field(min_length=1, max_length=2000)
    content: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_parent(self) -> CreatePage:
        if (self.parent_page_id is None) == (self.database_id is None):
            raise ValueError("give exactly one of parent_page_id and database_id")
        return self


def _text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": value}}]


class Notion(Connector):
    name = "notion"
    title = "Notion"
    auth = "token"
    description = "Create pages in Notion."
    credentials = NotionCredentials
    actions = {"create_page": ActionSpec("create_page", "POST /v1/pages", CreatePage)}

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        if params.database_id is not None:
            parent = {"database_id": params.database_id}
            properties = {"Name": {"title": _text(params.title)}}
        else:
            parent = {"page_id": params.parent_page_id}
            properties = {"title": {"title": _text(params.title)}}
        body: dict[str, Any] = {"parent": parent, "properties": properties}
        if params.content:
            body["children"] = [
                {
                    "object": "block",
                    "type": "paragraph",
                    "paragraph": {"rich_text": _text(params.content)},
                }
            ]
        response = await self.http.call(
            "notion",
            "POST",
            f"{self.base_url}/v1/pages",
            headers={
                "Authorization": f"Bearer {credentials.token}",
                "Notion-Version": NOTION_VERSION,
            },
            json=body,
        )
        answer = json_object("notion", response)
        return {"id": answer.get("id"), "url": answer.get("url")}
