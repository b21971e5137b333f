"""Which event types travel on which topic, with their payload models.

The AsyncAPI document is generated from this table; a new event type is
added here beside its topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas import jobs, topics
from schemas.topics import Topic


@dataclass(frozen=True)
class EventType:
    name: str
    topic: Topic
    payload: type[BaseModel]
    summary: str


EVENTS: tuple[EventType, ...] = (
    EventType(jobs.JOB_REQUESTED, topics.AI_JOB_REQUESTED, jobs.JobRequested,
              "A chat job to run on its model."),
    EventType(jobs.JOB_STARTED, topics.AI_JOB_LIFECYCLE, jobs.JobStarted,
              "A worker began a job's model call."),
    EventType(jobs.JOB_SUCCEEDED, topics.AI_JOB_LIFECYCLE, jobs.JobSucceeded,
              "A job's answer is stored."),
    EventType(jobs.JOB_RETRYING, topics.AI_JOB_LIFECYCLE, jobs.JobRetrying,
              "A model call failed and will be tried again."),
    EventType(jobs.JOB_FAILED, topics.AI_JOB_LIFECYCLE, jobs.JobFailed,
              "A job ended without an answer."),
    EventType(jobs.USAGE_RECORDED, topics.USAGE_RECORDED, jobs.UsageRecorded,
              "Tokens and cost of one model call."),
)  # fmt: skip


def on_topic(topic: Topic) -> list[EventType]:
    return [e for e in EVENTS if e.topic.name == topic.name]
