"""Every Kafka topic, declared once, with its partitions and retention."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int
    description: str

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"


AI_JOB_REQUESTED = Topic(
    "ai.job.requested", 12, 7 * DAY_MS, "A client asked for a model call (chat job)."
)
AI_JOB_LIFECYCLE = Topic(
    "ai.job.lifecycle", 12, 30 * DAY_MS, "Status changes of jobs: started, succeeded, failed."
)
USAGE_RECORDED = Topic(
    "usage.recorded", 6, 90 * DAY_MS, "A billable act: tokens and cost of one model call."
)
AI_JOB_REQUESTED_BATCH = Topic(
    "ai.job.requested.batch",
    12,
    7 * DAY_MS,
    "Chat jobs fanned out from batches: a lower-priority lane with its own workers.",
)
BATCH_REQUESTED = Topic(
    "batch.requested", 6, 30 * DAY_MS, "Batches created and cancellations asked for."
)

MEMORY_COMMANDS = Topic(
    "memory.commands",
    6,
    -1,
    "Remember and forget memories of users; kept forever so a replay rebuilds the store.",
)

MEMORY_EVENTS = Topic(
    "memory.events",
    6,
    -1,
    "What the memory group stored (chunks and vectors) or failed to embed; kept forever "
    "so a replay rebuilds the store without embedding again.",
)

USAGE_BUDGET = Topic(
    "usage.budget", 3, 90 * DAY_MS, "Budgets of tenants and keys crossed 80% or 100% of a month."
)

WEBHOOK_RECEIVED = Topic(
    "webhook.received", 6, 30 * DAY_MS, "A verified delivery from a webhook source, raw body kept."
)
INTEGRATION_ACTION_REQUESTED = Topic(
    "integration.action.requested", 6, 7 * DAY_MS, "Run one connector action (Slack, GitHub …)."
)

CONVERSATION_EVENTS = Topic(
    "conversation.events",
    6,
    -1,
    "Conversations and responses: created, items added, output of a turn, deleted; keyed by "
    "conversation (or by response outside one); kept forever so a replay rebuilds the threads.",
)

NOTIFICATIONS_EVENTS = Topic(
    "notifications.events",
    3,
    30 * DAY_MS,
    "Outbound webhooks: a subscription disabled after its endpoint failed for days.",
)
SCHEDULE_EVENTS = Topic(
    "schedule.events",
    3,
    30 * DAY_MS,
    "Slots of schedules that fired (`schedule.fired`, the event id is the slot's) and "
    "tasks' reminders that came due (`task.due`); keyed by schedule.",
)
BATCH_EVENTS = Topic(
    "batch.events",
    3,
    30 * DAY_MS,
    "Batches that reached a final status (`batch.completed`: completed, failed, expired or "
    "cancelled); keyed by batch.",
)
ALERTS_EVENTS = Topic(
    "alerts.events",
    3,
    30 * DAY_MS,
    "Episodes of tenants' alert rules: `alert.fired` when one opens, `alert.resolved` when "
    "it ends (the fired event's id is the episode's); keyed by rule.",
)

ALL: tuple[Topic, ...] = (
    AI_JOB_REQUESTED,
    AI_JOB_LIFECYCLE,
    USAGE_RECORDED,
    AI_JOB_REQUESTED_BATCH,
    BATCH_REQUESTED,
    USAGE_BUDGET,
    WEBHOOK_RECEIVED,
    INTEGRATION_ACTION_REQUESTED,
    MEMORY_COMMANDS,
    MEMORY_EVENTS,
    CONVERSATION_EVENTS,
    NOTIFICATIONS_EVENTS,
    SCHEDULE_EVENTS,
    BATCH_EVENTS,
    ALERTS_EVENTS,
)


def by_name(name: str) -> Topic:
    for topic in ALL:
        if topic.name == name:
            return topic
    raise KeyError(name)
