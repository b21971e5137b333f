"""The Conversations API's request bodies, and the rules both conversation APIs share
for new items (their ids and places) and for what a response echoes (`response_params`).

Limits are OpenAI's: metadata holds at most 16 pairs (keys up to 64 characters, values up
to 512), and a request adds at most 20 items.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from schemas.conversations import (
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    ItemIn,
    MessageItem,
    StoredItem,
    item_id,
    position,
)
from schemas.jobs import ChatJob
from schemas.request import RequestModel

MAX_NEW_ITEMS = 20
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = dict[MetadataKey, MetadataValue]


class ConversationCreate(RequestModel):
    """POST /v1/conversations. `user_id` (Ayush's) names the user an API key makes it for;
    a signed-in user's conversation is always their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[ItemIn] | None = Field(default=None, max_length=MAX_NEW_ITEMS)
    metadata: Metadata | None = Field(default=None, max_length=16)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)


class ConversationUpdate(RequestModel):
    """POST /v1/conversations/{id}: its metadata, replaced whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata: Metadata | None = Field(max_length=16)


class ItemsCreate(RequestModel):
    """POST /v1/conversations/{id}/items."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_NEW_ITEMS)


_KINDS: dict[str, Literal["msg", "fc", "fco"]] = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
}


def normal(item: Item) -> Item:
    """The item as stored: a message's content as a list of parts, no caller-given id."""
    if isinstance(item, MessageItem):
        return item.model_copy(update={"content": item.parts(), "id": None})
    assert isinstance(item, FunctionCallItem | FunctionCallOutputItem)
    return item.model_copy(update={"id": None})


def new_items(
    items: Sequence[Item], made_from: uuid.UUID, phase: int, created_at: int
) -> list[StoredItem]:
    """Items given their ids (`item_id`, from what made them, their phase and place) and
    places (`position`, the maker a uuid7, so later items sort after): a turn's input
    (phase 0) and output (phase 1) are made from the same turn, and never share an id."""
    return [
        StoredItem(
            id=item_id(_KINDS[item.type], made_from, phase * 100_000 + index),
            position=position(made_from, phase, index),
            item=normal(item),
            created_at=created_at,
        )
        for index, item in enumerate(items)
    ]


def response_params(job: ChatJob) -> dict[str, Any]:
    """What a response echoes back of its request (the `params` of its row), from the
    response job: the same whether the ingress writes the row or a replay does."""
    turn = job.response
    text = None
    if job.response_format is not None:
        text = {"format": job.response_format.model_dump(mode="json", exclude_none=True)}
    return {
        "instructions": turn.instructions if turn else None,
        "tools": [
            {"type": "function", **t.model_dump(mode="json", exclude_none=True)}
            for t in job.tools or []
        ],
        "tool_choice": (
            {"type": "function", "name": job.tool_choice.name}
            if job.tool_choice is not None and not isinstance(job.tool_choice, str)
            else job.tool_choice or "auto"
        ),
        "temperature": job.temperature,
        "top_p": job.top_p,
        "max_output_tokens": job.max_tokens,
        "text": text,
        "metadata": dict(job.metadata),
        "truncation": turn.truncation if turn else "disabled",
    }
