"""The conversation-projection group: conversations, their items and responses, rebuilt
from events alone.

Runs only in replay (`ayush replay --into-group conversation-projection`): live, the
ingress (the Conversations and Responses APIs) and the model-calls group write these rows.
From conversation.events: conversations created, updated, deleted, items added and
deleted, responses finished (their output) and deleted; from ai.job.requested, the
response jobs (their rows as queued, with their input). Each event is applied once (its
id claimed with its rows) and every row is idempotent by id.
"""

from __future__ import annotations

from typing import Any

from infra.db import conversations as store
from infra.db import responses
from infra.db.conversation_models import ResponseRecord
from infra.db.engine import Database
from infra.kafka.group import Group
from schemas import conversations as conv
from schemas import jobs as job_events
from schemas import topics
from schemas.conversations_api import response_params
from schemas.envelope import Envelope

group: Group[Database] = Group(
    "conversation-projection",
    [topics.AI_JOB_REQUESTED.name, topics.CONVERSATION_EVENTS.name],
    replay_only=True,
)


def _claim(raw: Envelope[Any]) -> store.Claim:
    return store.Claim(group.name, raw.id)


@group.on(conv.CONVERSATION_CREATED, conv.ConversationCreated)
async def on_created(raw: Envelope[conv.ConversationCreated], db: Database) -> None:
    created = raw.payload
    await store.create(
        db,
        raw.tenant_id,
        created.conversation_id,
        user_id=created.user_id,
        metadata=created.metadata,
        items=created.items,
        at=raw.occurred_at,
        claim=_claim(raw),
    )


@group.on(conv.CONVERSATION_UPDATED, conv.ConversationUpdated)
async def on_updated(raw: Envelope[conv.ConversationUpdated], db: Database) -> None:
    updated = raw.payload
    await store.update_conversation(
        db,
        raw.tenant_id,
        updated.conversation_id,
        metadata=updated.metadata,
        title=updated.title,
        claim=_claim(raw),
    )


@group.on(conv.CONVERSATION_DELETED, conv.ConversationDeleted)
async def on_deleted(raw: Envelope[conv.ConversationDeleted], db: Database) -> None:
    await store.delete_conversation(
        db, raw.tenant_id, raw.payload.conversation_id, claim=_claim(raw)
    )


@group.on(conv.ITEMS_ADDED, conv.ItemsAdded)
async def on_items_added(raw: Envelope[conv.ItemsAdded], db: Database) -> None:
    added = raw.payload
    await store.add_items(
        db, raw.tenant_id, added.conversation_id, added.items, at=raw.occurred_at, claim=_claim(raw)
    )


@group.on(conv.ITEM_DELETED, conv.ItemDeleted)
async def on_item_deleted(raw: Envelope[conv.ItemDeleted], db: Database) -> None:
    gone = raw.payload
    await store.delete_item(db, raw.tenant_id, gone.conversation_id, gone.item_id, _claim(raw))


@group.on(job_events.JOB_REQUESTED, job_events.JobRequested)
async def on_job_requested(raw: Envelope[job_events.JobRequested], db: Database) -> None:
    requested = raw.payload
    job, turn = requested.job, requested.job.response
    if job.kind != "response" or turn is None:
        return  # a chat or embedding job: the job projection's
    row = ResponseRecord(
        id=requested.job_id,
        tenant_id=raw.tenant_id,
        user_id=job.user_id,
        conversation_id=turn.conversation_id,
        previous_response_id=turn.previous_response_id,
        model=job.model,
        status="queued",
        store=turn.store,
        background=turn.background,
        # The ingress puts what it echoes in the turn; else it is made from the job.
        params=turn.params if turn.params is not None else response_params(job),
        created_at=raw.occurred_at,
    )
    await responses.create(db, row, turn.input, _claim(raw))


@group.on(conv.RESPONSE_FINISHED, conv.ResponseFinished)
async def on_response_finished(raw: Envelope[conv.ResponseFinished], db: Database) -> None:
    end = raw.payload
    error = None
    if end.error_code is not None or end.error_message is not None:
        error = {"code": end.error_code, "message": end.error_message}
    await responses.finish(
        db,
        raw.tenant_id,
        end.response_id,
        status=end.status,
        output=end.output,
        usage=end.usage.model_dump(mode="json") if end.usage else None,
        error=error,
        context=end.context.model_dump(mode="json") if end.context else None,
        at=raw.occurred_at,
        claim=_claim(raw),
    )


@group.on(conv.RESPONSE_DELETED, conv.ResponseDeleted)
async def on_response_deleted(raw: Envelope[conv.ResponseDeleted], db: Database) -> None:
    await responses.delete_response(db, raw.tenant_id, raw.payload.response_id, _claim(raw))
