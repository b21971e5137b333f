"""Which event types travel on which topic, with their payload models.

The AsyncAPI document is generated from this table; a new event type is
added here beside its topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas import alerts, conversations, integrations, jobs, memory, schedules, topics, usage
from schemas.topics import Topic


@dataclass(frozen=True)
class EventType:
    name: str
    topic: Topic
    payload: type[BaseModel]
    summary: str


EVENTS: tuple[EventType, ...] = (
    EventType(
        jobs.JOB_REQUESTED,
        topics.AI_JOB_REQUESTED,
        jobs.JobRequested,
        "A chat or embedding job to run on its model.",
    ),
    EventType(
        jobs.JOB_STARTED,
        topics.AI_JOB_LIFECYCLE,
        jobs.JobStarted,
        "A worker began a job's model call.",
    ),
    EventType(
        jobs.JOB_SUCCEEDED, topics.AI_JOB_LIFECYCLE, jobs.JobSucceeded, "A job's answer is stored."
    ),
    EventType(
        jobs.JOB_RETRYING,
        topics.AI_JOB_LIFECYCLE,
        jobs.JobRetrying,
        "A model call failed and will be tried again.",
    ),
    EventType(
        jobs.JOB_FAILED, topics.AI_JOB_LIFECYCLE, jobs.JobFailed, "A job ended without an answer."
    ),
    EventType(
        jobs.USAGE_RECORDED,
        topics.USAGE_RECORDED,
        jobs.UsageRecorded,
        "Tokens and cost of one model call or connector action.",
    ),
    EventType(
        usage.BUDGET_THRESHOLD_CROSSED,
        topics.USAGE_BUDGET,
        usage.BudgetThresholdCrossed,
        "A tenant's or key's monthly spend crossed 80% or 100% of its budget.",
    ),
    EventType(
        integrations.WEBHOOK_RECEIVED,
        topics.WEBHOOK_RECEIVED,
        integrations.WebhookReceived,
        "A verified webhook delivery, raw body kept.",
    ),
    EventType(
        integrations.ACTION_REQUESTED,
        topics.INTEGRATION_ACTION_REQUESTED,
        integrations.ActionRequested,
        "Run one connector action with a connection.",
    ),
    EventType(
        integrations.ACTION_SUCCEEDED,
        topics.AI_JOB_LIFECYCLE,
        integrations.ActionFinished,
        "A connector action's job succeeded.",
    ),
    EventType(
        integrations.ACTION_FAILED,
        topics.AI_JOB_LIFECYCLE,
        integrations.ActionFinished,
        "A connector action's job failed.",
    ),
    EventType(
        memory.MEMORY_REMEMBER,
        topics.MEMORY_COMMANDS,
        memory.Remember,
        "Store a text as a memory of a user: chunked, embedded, kept.",
    ),
    EventType(
        memory.MEMORY_FORGET,
        topics.MEMORY_COMMANDS,
        memory.Forget,
        "Forget one memory: its vectors and text are erased.",
    ),
    EventType(
        memory.MEMORY_FORGET_USER,
        topics.MEMORY_COMMANDS,
        memory.ForgetUser,
        "Forget every memory of a user remembered before this event.",
    ),
    EventType(
        memory.MEMORY_STORED,
        topics.MEMORY_EVENTS,
        memory.Stored,
        "Chunks of a memory and their vectors, as stored (in parts).",
    ),
    EventType(
        memory.MEMORY_EMBED_FAILED,
        topics.MEMORY_EVENTS,
        memory.EmbedFailed,
        "The embedder refused a memory's text for good.",
    ),
    EventType(
        conversations.CONVERSATION_CREATED,
        topics.CONVERSATION_EVENTS,
        conversations.ConversationCreated,
        "A conversation began, with its first items.",
    ),
    EventType(
        conversations.CONVERSATION_UPDATED,
        topics.CONVERSATION_EVENTS,
        conversations.ConversationUpdated,
        "A conversation's metadata changed or its title was generated.",
    ),
    EventType(
        conversations.CONVERSATION_DELETED,
        topics.CONVERSATION_EVENTS,
        conversations.ConversationDeleted,
        "A conversation and its items were deleted.",
    ),
    EventType(
        conversations.ITEMS_ADDED,
        topics.CONVERSATION_EVENTS,
        conversations.ItemsAdded,
        "Items a caller added to a conversation.",
    ),
    EventType(
        conversations.ITEM_DELETED,
        topics.CONVERSATION_EVENTS,
        conversations.ItemDeleted,
        "One item of a conversation was deleted.",
    ),
    EventType(
        conversations.RESPONSE_FINISHED,
        topics.CONVERSATION_EVENTS,
        conversations.ResponseFinished,
        "A response ended: its output items (in its conversation too), usage, or its error.",
    ),
    EventType(
        conversations.RESPONSE_DELETED,
        topics.CONVERSATION_EVENTS,
        conversations.ResponseDeleted,
        "A stored response and its items were deleted.",
    ),
    EventType(
        schedules.SCHEDULE_FIRED,
        topics.SCHEDULE_EVENTS,
        schedules.ScheduleFired,
        "One slot of a schedule fired; the event id is the slot's (uuid5 of schedule and time).",
    ),
    EventType(
        schedules.TASK_DUE,
        topics.SCHEDULE_EVENTS,
        schedules.TaskDue,
        "A reminder of a user's task came due.",
    ),
    EventType(
        alerts.ALERT_FIRED,
        topics.ALERTS_EVENTS,
        alerts.AlertEvent,
        "An alert rule's condition began to hold: an episode opened (the event id is its).",
    ),
    EventType(
        alerts.ALERT_RESOLVED,
        topics.ALERTS_EVENTS,
        alerts.AlertEvent,
        "An alert rule's condition stopped holding: its firing episode resolved.",
    ),
)


def on_topic(topic: Topic) -> list[EventType]:
    return [e for e in EVENTS if e.topic.name == topic.name]
