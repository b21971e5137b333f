"""Conversations, their items and responses: the shapes of OpenAI's Responses and
Conversations APIs, as the ingress takes them and as the events carry them.

An item is what a conversation is made of: a message (a user's, an assistant's, the
instructions of a system or developer), a function call the model asked for, and the
output a client sent back for it. Items are stored and sent in one normal form
(`StoredItem`): a message's content is always a list of parts, and every item has its
id. The wire ids are OpenAI's: `conv_<hex>`, `resp_<hex>`, `msg_<hex>`, `fc_<hex>`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.images import check_image_url
from schemas.request import RequestModel

CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
CONVERSATION_DELETED = "conversation.deleted"
ITEMS_ADDED = "conversation.items.added"
ITEM_DELETED = "conversation.item.deleted"
RESPONSE_FINISHED = "response.finished"
RESPONSE_DELETED = "response.deleted"

ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "incomplete", "cancelled"]
Truncation = Literal["auto", "disabled"]


# wire ids -------------------------------------------------------------------------------
def conversation_wire_id(conversation_id: uuid.UUID) -> str:
    return f"conv_{conversation_id.hex}"


def response_wire_id(response_id: uuid.UUID) -> str:
    return f"resp_{response_id.hex}"


def parse_wire_id(value: str, prefix: str) -> uuid.UUID | None:
    """The uuid behind `<prefix>_<hex>` (a plain uuid is taken too); None when it is not one."""
    text = value.strip()
    if text.startswith(prefix + "_"):
        text = text[len(prefix) + 1 :]
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def item_id(kind: Literal["msg", "fc", "fco"], made_from: uuid.UUID, index: int = 0) -> str:
    """An item's id. Derived from what made the item (a turn, an event) and its place in it,
    so publishing or replaying the same event gives the same ids."""
    return f"{kind}_{uuid.uuid5(made_from, str(index)).hex}"


def position(turn: uuid.UUID, phase: int, index: int) -> str:
    """The sort key of an item in its conversation: the turn (a uuid7, time ordered), then
    its input (phase 0) before its output (phase 1), then its place."""
    return f"{turn.hex}.{phase}{index:05d}"


# item content ---------------------------------------------------------------------------
class InputText(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["input_text"] = "input_text"
    text: str = Field(max_length=1_000_000)


class OutputText(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["output_text"] = "output_text"
    text: str = Field(max_length=1_000_000)
    annotations: list[Any] = Field(default_factory=list, max_length=1000)


class InputImage(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["input_image"] = "input_image"
    image_url: str = Field(min_length=1, max_length=12_000_000)
    detail: Literal["auto", "low", "high"] = "auto"

    @model_validator(mode="after")
    def _fetchable(self) -> InputImage:
        check_image_url(self.image_url)
        return self


Content = Annotated[InputText | OutputText | InputImage, Field(discriminator="type")]


# items ----------------------------------------------------------------------------------
class MessageItem(RequestModel):
    """A message. `content` may be a plain string on input; stored, it is a list of parts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["message"] = "message"
    id: str | None = Field(default=None, max_length=200)
    role: Literal["user", "assistant", "system", "developer"]
    # The limits apply to each form: a text of up to 1e6 characters, or up to 100 parts.
    content: (
        Annotated[str, Field(max_length=1_000_000)]
        | Annotated[list[Content], Field(max_length=100)]
    )
    status: Literal["in_progress", "completed", "incomplete"] | None = None

    def parts(self) -> list[InputText | OutputText | InputImage]:
        if isinstance(self.content, str):
            if self.role == "assistant":
                return [OutputText(text=self.content)]
            return [InputText(text=self.content)]
        return list(self.content)

    def text(self) -> str:
        return "".join(p.text for p in self.parts() if not isinstance(p, InputImage))


class FunctionCallItem(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["function_call"] = "function_call"
    id: str | None = Field(default=None, max_length=200)
    call_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    arguments: str = Field(default="{}", max_length=1_000_000)
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = Field(default=None, max_length=200)
    call_id: str = Field(min_length=1, max_length=200)
    output: str = Field(max_length=1_000_000)
    status: Literal["in_progress", "completed", "incomplete"] | None = None


def _message_by_default(value: Any) -> Any:
    # OpenAI's "easy input message": {"role": "user", "content": "hi"} has no type.
    if isinstance(value, dict) and "type" not in value and "role" in value:
        return {**value, "type": "message"}
    return value


Item = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")
]


class ItemIn(RequestModel):
    """One item as a caller sends it (the type may be left out of a message)."""

    model_config = ConfigDict(frozen=True)

    item: Item

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        return {"item": _message_by_default(value)}


class StoredItem(RequestModel):
    """An item as stored and published: its id, its place, and the item in normal form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(max_length=200)
    position: str = Field(max_length=64)
    item: Item
    created_at: int = Field(description="Unix seconds, as OpenAI's objects give them")

    def wire(self) -> dict[str, Any]:
        """The item as the APIs show it: OpenAI's shape, with its id and status."""
        body = self.item.model_dump(mode="json", exclude_none=True)
        body["id"] = self.id
        if isinstance(self.item, MessageItem):
            body["content"] = [p.model_dump(mode="json") for p in self.item.parts()]
        body.setdefault("status", "completed")
        return body


# events ---------------------------------------------------------------------------------
class ConversationCreated(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID
    user_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    items: list[StoredItem] = Field(default_factory=list)


class ConversationUpdated(BaseModel):
    """New metadata (replaces the old), a generated title, or both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID
    metadata: dict[str, str] | None = None
    title: str | None = None


class ConversationDeleted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID


class ItemsAdded(BaseModel):
    """Items a caller added to a conversation (POST …/items), outside any response."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID
    items: list[StoredItem]
    # The conversation's user, when it has one: the items are sealed with that user's key.
    user_id: str | None = None


class ItemDeleted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID
    item_id: str


class ResponseUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class ContextSent(BaseModel):
    """What a turn sent the model: how many items of the history, how many it dropped to
    fit the model's context window, and the input's estimated size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: int
    dropped: int = 0
    input_tokens: int = 0


class ResponseFinished(BaseModel):
    """A response ended: its output items (stored with it, and in its conversation), or why
    it did not end well."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    response_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    status: ResponseStatus
    model: str
    output: list[StoredItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    error_code: str | None = None
    error_message: str | None = None
    context: ContextSent | None = None
    # The turn's user, when it has one: the output is sealed with that user's key.
    user_id: str | None = None


class ResponseDeleted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    response_id: uuid.UUID


# the turn a response job carries ------------------------------------------------------------
class ResponseTurn(RequestModel):
    """What a `kind="response"` job adds to its ChatJob: the new input items (stored, with
    ids), where the history comes from, and how to fit it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: list[StoredItem] = Field(max_length=10_000)
    instructions: str | None = Field(default=None, max_length=1_000_000)
    previous_response_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    store: bool = True
    background: bool = False
    truncation: Truncation = "disabled"
    # What the response echoes of its request (its row's `params`: tools, text format …),
    # carried so a replay writes the row the ingress wrote.
    params: dict[str, Any] | None = None
