"""Tables of conversations, their items and responses: projections of conversation.events
and of the response jobs (written live by the ingress and model-calls, rebuilt by replay)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from infra.db.models import timestamp, timestamp_now


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"

    id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    # The user it belongs to (None: made by an API key for the tenant).
    user_id: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=500)
    conversation_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False)
    )
    created_at: datetime = timestamp_now()
    # The newest activity (an item added, a turn answered): lists sort by it.
    updated_at: datetime = timestamp_now()


class ConversationItem(SQLModel, table=True):
    """An item of a conversation, of a response (its input or output), or of both."""

    __tablename__ = "conversation_items"

    id: str = Field(primary_key=True, max_length=200)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    conversation_id: uuid.UUID | None = None
    response_id: uuid.UUID | None = None
    # The item is the response's input (0) or output (1); None outside a response.
    phase: int | None = None
    position: str = Field(max_length=64)
    type: str = Field(max_length=32)
    item: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamp_now()


class ResponseRecord(SQLModel, table=True):
    """A response: its request's parameters, its status, and (once ended) its usage."""

    __tablename__ = "responses"

    id: uuid.UUID = Field(primary_key=True)  # the id of the job that runs it
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    user_id: str | None = Field(default=None, max_length=200)
    conversation_id: uuid.UUID | None = None
    previous_response_id: uuid.UUID | None = None
    model: str = Field(max_length=200)
    status: str = Field(max_length=16)
    store: bool = True
    background: bool = False
    # What the API echoes back: instructions, tools, temperature, text, metadata …
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    usage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    # What was sent to the model (items, dropped, estimated tokens).
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    created_at: datetime = timestamp_now()
    completed_at: datetime | None = timestamp()
