"""The Conversations API (OpenAI's): conversations, and the items they are made of.

POST/GET /v1/conversations, GET/POST/DELETE /v1/conversations/{id} (POST updates its
metadata), GET/POST /v1/conversations/{id}/items, GET/DELETE …/items/{item_id}. Shapes
and errors are OpenAI's, so the official SDKs work unchanged; Ayush adds `user_id` (the
user a key makes a conversation for, and whose threads GET /v1/conversations lists),
`title` and `updated_at` (newest activity: lists sort by it).

Each write goes to Postgres first (a GET right after sees it), then out as its event on
conversation.events, keyed by the conversation; an event that cannot be published takes
its rows back and the client gets 503. A delete is the other way round: its event first,
then the rows, since taking a delete back would mean writing the thread again.

A signed-in user sees and acts on their own conversations only; another user's, like
another tenant's, is 404.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from infra.db import conversations as store
from infra.db.conversation_models import Conversation
from infra.errors import EventTooLarge, TransientError
from producers.ingress import openai_errors as oe
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.caller import Caller
from producers.ingress.errors import ApiError, TooLarge, unavailable
from producers.ingress.scope import scoped_user, visible
from producers.ingress.state import Services, Svc
from schemas import conversations as conv
from schemas import topics
from schemas.conversations_api import ConversationCreate, ConversationUpdate, ItemsCreate, new_items
from schemas.envelope import Envelope
from schemas.ids import uuid7

Order = Literal["asc", "desc"]
# Where a caller's item sits in a validation error's location: dropped from `param`.
_WRAPPERS = {"body", "query", "path", "item", "message", "function_call", "function_call_output"}
_UNION_TAG = re.compile(r"^(constrained-|list\[|tagged-union\[)")
_WRONG_FORM = {"string_type", "list_type", "dict_type", "model_type", "model_attributes_type"}


class OpenAIShaped(APIRoute):
    """A route whose every error (a refused caller, a bad field) is OpenAI's JSON, naming
    the field in `param`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                raise invalid(exc) from exc
            except ApiError as exc:
                raise oe.from_api_error(exc) from exc

        return answer


def invalid(exc: RequestValidationError) -> oe.OpenAIError:
    errors = exc.errors()
    # Of a value that fits none of a union's forms, the form it came closest to.
    first = next((e for e in errors if e["type"] not in _WRONG_FORM), errors[0])
    parts: list[str] = []
    for part in first["loc"]:
        if part == "[key]":  # a bad key of a dict: the dict is what is named
            parts.pop()
        elif part not in _WRAPPERS and not _UNION_TAG.match(str(part)):
            parts.append(str(part))
    param = ".".join(parts) or None
    message = f"invalid value for {param}: {first['msg']}" if param else str(first["msg"])
    return oe.OpenAIError(400, message, "invalid_request_error", "invalid_value", param)


def bad(param: str, message: str) -> oe.OpenAIError:
    return oe.OpenAIError(400, message, "invalid_request_error", "invalid_value", param)


router = APIRouter(prefix="/v1/conversations", tags=["conversations"], route_class=OpenAIShaped)
_BODY = {"requestBody": {"required": True, "content": {"application/json": {}}}}
_MAYBE_BODY = {"requestBody": {"required": False, "content": {"application/json": {}}}}
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", openapi_extra=_MAYBE_BODY)
async def create_conversation(
    body: Annotated[ConversationCreate, Depends(json_body(ConversationCreate, optional=True))],
    caller: Authenticated,
    svc: Svc,
) -> dict[str, Any]:
    owner = scoped_user(caller, body.user_id)
    conversation_id, event_id, at = uuid7(), uuid7(), datetime.now(UTC)
    items = new_items([i.item for i in body.items or []], event_id, 0, int(at.timestamp()))
    metadata = dict(body.metadata or {})
    await store.create(
        svc.db,
        caller.tenant_id,
        conversation_id,
        user_id=owner,
        metadata=metadata,
        items=items,
        at=at,
    )
    created = conv.ConversationCreated(
        conversation_id=conversation_id, user_id=owner, metadata=metadata, items=items
    )
    try:
        await _publish(
            svc, caller, conv.CONVERSATION_CREATED, conversation_id, created, event_id, at
        )
    except BaseException:
        await store.delete_conversation(svc.db, caller.tenant_id, conversation_id)
        raise
    row = Conversation(
        id=conversation_id,
        tenant_id=caller.tenant_id,
        user_id=owner,
        conversation_metadata=metadata,
        created_at=at,
        updated_at=at,
    )
    return view(row)


@router.get("")
async def list_conversations(
    caller: Authenticated,
    svc: Svc,
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Limit = 20,
    after: Annotated[str | None, Query(max_length=200)] = None,
    order: Order = "desc",
) -> dict[str, Any]:
    """The tenant's conversations (a user's: `user_id`, or the signed-in user's own), the
    most recently active first."""
    user = scoped_user(caller, user_id)
    cursor = None
    if after is not None:
        cursor = conv.parse_wire_id(after, "conv")
        if cursor is None:
            raise bad("after", f"after: not a conversation id: {after}")
    try:
        page = await store.list_conversations(
            svc.db, caller.tenant_id, user_id=user, limit=limit, after=cursor, order=order
        )
    except store.UnknownCursor as exc:
        raise bad("after", f"after: no such conversation: {after}") from exc
    return listed([view(row) for row in page.rows], page.has_more)


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, caller: Authenticated, svc: Svc) -> dict[str, Any]:
    return view(await _conversation(svc, caller, conversation_id))


@router.post("/{conversation_id}", openapi_extra=_BODY)
async def update_conversation(
    conversation_id: str,
    body: Annotated[ConversationUpdate, Depends(json_body(ConversationUpdate))],
    caller: Authenticated,
    svc: Svc,
) -> dict[str, Any]:
    row = await _conversation(svc, caller, conversation_id)
    metadata = dict(body.metadata or {})
    await store.update_conversation(svc.db, caller.tenant_id, row.id, metadata=metadata)
    updated = conv.ConversationUpdated(conversation_id=row.id, metadata=metadata)
    try:
        await _publish(svc, caller, conv.CONVERSATION_UPDATED, row.id, updated)
    except BaseException:
        await store.restore(svc.db, row)
        raise
    return view(row, metadata=metadata)


@router.delete("/{conversation_id}")
async def delete_conversation(
    conversation_id: str, caller: Authenticated, svc: Svc
) -> dict[str, Any]:
    row = await _conversation(svc, caller, conversation_id)
    deleted = conv.ConversationDeleted(conversation_id=row.id)
    await _publish(svc, caller, conv.CONVERSATION_DELETED, row.id, deleted)
    await store.delete_conversation(svc.db, caller.tenant_id, row.id)
    return {
        "id": conv.conversation_wire_id(row.id),
        "object": "conversation.deleted",
        "deleted": True,
    }


@router.post("/{conversation_id}/items", openapi_extra=_BODY)
async def add_items(
    conversation_id: str,
    body: Annotated[ItemsCreate, Depends(json_body(ItemsCreate))],
    caller: Authenticated,
    svc: Svc,
) -> dict[str, Any]:
    row = await _conversation(svc, caller, conversation_id)
    event_id, at = uuid7(), datetime.now(UTC)
    items = new_items([i.item for i in body.items], event_id, 0, int(at.timestamp()))
    await store.add_items(svc.db, caller.tenant_id, row.id, items, at=at)
    added = conv.ItemsAdded(conversation_id=row.id, items=items, user_id=row.user_id)
    try:
        await _publish(svc, caller, conv.ITEMS_ADDED, row.id, added, event_id, at)
    except BaseException:
        await store.remove_items(svc.db, caller.tenant_id, [i.id for i in items])
        raise
    return listed([i.wire() for i in items], False)


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    caller: Authenticated,
    svc: Svc,
    limit: Limit = 20,
    after: Annotated[str | None, Query(max_length=200)] = None,
    order: Order = "desc",
) -> dict[str, Any]:
    """A page of the conversation's items, the newest first unless `order` is "asc"."""
    row = await _conversation(svc, caller, conversation_id)
    try:
        page = await store.items(
            svc.db, caller.tenant_id, row.id, limit=limit, after=after, order=order
        )
    except store.UnknownCursor as exc:
        raise bad("after", f"after: no such item in this conversation: {after}") from exc
    return listed([i.wire() for i in page.rows], page.has_more)


@router.get("/{conversation_id}/items/{item_id}")
async def get_item(
    conversation_id: str, item_id: str, caller: Authenticated, svc: Svc
) -> dict[str, Any]:
    row = await _conversation(svc, caller, conversation_id)
    found = await store.get_item(svc.db, caller.tenant_id, row.id, item_id)
    if found is None:
        raise oe.not_found("item", item_id)
    return found.wire()


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str, item_id: str, caller: Authenticated, svc: Svc
) -> dict[str, Any]:
    """Takes the item out; answers the conversation, as OpenAI's does."""
    row = await _conversation(svc, caller, conversation_id)
    if await store.get_item(svc.db, caller.tenant_id, row.id, item_id) is None:
        raise oe.not_found("item", item_id)
    gone = conv.ItemDeleted(conversation_id=row.id, item_id=item_id)
    await _publish(svc, caller, conv.ITEM_DELETED, row.id, gone)
    await store.delete_item(svc.db, caller.tenant_id, row.id, item_id)
    return view(row)


# ----------------------------------------------------------------------------------------
async def _conversation(svc: Services, caller: Caller, wire_id: str) -> Conversation:
    """The caller's conversation by its wire id; 404 when it is not one they may see."""
    conversation_id = conv.parse_wire_id(wire_id, "conv")
    row = None
    if conversation_id is not None:
        row = await store.get(svc.db, caller.tenant_id, conversation_id)
    if row is None or not visible(caller, row.user_id):
        raise oe.not_found("conversation", wire_id)
    return row


async def _publish(
    svc: Services,
    caller: Caller,
    type_: str,
    conversation_id: uuid.UUID,
    payload: Any,
    event_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> None:
    fields: dict[str, Any] = {"id": event_id or uuid7(), "occurred_at": at or datetime.now(UTC)}
    event: Envelope[Any] = caller.event(type_, conversation_id, payload, **fields)
    try:
        await svc.publisher.publish(topics.CONVERSATION_EVENTS.name, event)
    except EventTooLarge as exc:
        raise TooLarge(exc) from exc
    except TransientError as exc:
        raise unavailable("the event log", exc) from exc


def view(row: Conversation, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A conversation as OpenAI shows it, with Ayush's `title`, `user_id`, `updated_at`."""
    return {
        "id": conv.conversation_wire_id(row.id),
        "object": "conversation",
        "created_at": int(row.created_at.timestamp()),
        "metadata": row.conversation_metadata if metadata is None else metadata,
        "title": row.title,
        "user_id": row.user_id,
        "updated_at": int(row.updated_at.timestamp()),
    }


def listed(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
