"""What a response turn tells the live channels (the conversation's and its user's)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from consumers.groups.model_calls import turns
from infra.db.conversation_models import ResponseRecord
from producers.ingress import responses as ingress
from schemas.conversations import ResponseFinished, item_id
from schemas.envelope import Actor, Envelope
from schemas.jobs import JobRequested
from schemas.responses_api import ResponseRequest, output_items, response_job


class Channels:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def publish(self, entries: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        self.sent += entries
        return [str(i) for i, _ in enumerate(entries)]


class Publisher:
    def __init__(self) -> None:
        self.events: list[tuple[str, Envelope[Any]]] = []

    async def publish(self, topic: str, event: Envelope[Any]) -> None:
        self.events.append((topic, event))


TENANT, CONVERSATION, RESPONSE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
WHERE = {f"conversation:{CONVERSATION}", f"user:{TENANT}:u1"}


def request() -> JobRequested:
    body = ResponseRequest.model_validate({"model": "gpt-fake", "input": "hi", "user": "u1"})
    job = response_job(body, RESPONSE, 0, previous_response_id=None, conversation_id=CONVERSATION)
    return JobRequested(job_id=RESPONSE, job=job)


async def test_the_ingress_announces_the_turn_and_its_input() -> None:
    channels = Channels()
    job = request().job
    assert job.response is not None
    row = ResponseRecord(
        id=RESPONSE, tenant_id=TENANT, user_id="u1", conversation_id=CONVERSATION,
        model="gpt-fake", status="queued",
    )  # fmt: skip
    await ingress._announce(
        SimpleNamespace(channels=channels),  # type: ignore[arg-type]
        TENANT,
        row,
        job.response.input,
    )
    assert {c for c, _, _ in channels.sent} == WHERE
    assert sorted({e for _, e, _ in channels.sent}) == [
        "conversation.item.added",
        "response.created",
    ]
    added = [d for _, e, d in channels.sent if e == "conversation.item.added"]
    assert added[0]["item"]["id"] == job.response.input[0].id


async def test_the_worker_sends_deltas_and_the_end() -> None:
    channels, publisher = Channels(), Publisher()
    ports: Any = SimpleNamespace(channels=channels, publisher=publisher)
    announce = turns.delta_announcer(TENANT, request(), ports)
    assert announce is not None
    await announce("hel")
    [(_, event, data)] = [s for s in channels.sent if s[0].startswith("conversation:")]
    assert event == "response.output_text.delta"
    assert data["delta"] == "hel" and data["item_id"] == item_id("msg", RESPONSE, 0)

    channels.sent.clear()
    raw = Envelope[Any](
        type="ai.job.requested", tenant_id=TENANT, actor=Actor(kind="system", id="t"),
        correlation_id=RESPONSE, payload={},
    )  # fmt: skip
    finished = ResponseFinished(
        response_id=RESPONSE,
        conversation_id=CONVERSATION,
        status="completed",
        model="gpt-fake",
        output=output_items(RESPONSE, "hello", None, 0),
    )
    ended = turns.Ended(finished, {"usage": {}})
    await turns.tell(raw, request(), ended, ports)
    assert [e for c, e, _ in channels.sent if c.startswith("user:")] == [
        "conversation.item.added",
        "response.completed",
    ]
    # response.finished goes out with the job's outcome events, keyed by the conversation
    [(topic, envelope)] = turns.ended_events(raw, ended)
    assert topic == "conversation.events" and envelope.correlation_id == CONVERSATION
    assert envelope.type == "response.finished" and envelope.payload == finished
