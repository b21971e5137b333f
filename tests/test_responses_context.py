"""A conversation longer than its model's context window: the oldest turns dropped
(`truncation: "auto"`), or the turn refused naming the overflow (the default)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from infra.db.engine import Database
from tests.conftest import Running, TenantKey, make_tenant
from tests.fakes.llm import FakeLLMServer
from tests.harness import unique
from tests.test_responses_http import sent_roles_and_texts

# tests/fakes/prices.toml gives it a window of 1,000 tokens (250 kept for the answer).
TINY = "gpt-fake-tiny"


def turn_text(tag: str) -> str:
    """About 150 tokens, the fake answers with as many: a turn is ~300 of the window."""
    return tag + " " + " ".join(["apple"] * 150)


@pytest.fixture
async def oai(running: Running, db: Database) -> AsyncIterator[openai.AsyncOpenAI]:
    tenant: TenantKey = await make_tenant(db)
    async with openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=tenant.key, max_retries=0, timeout=30
    ) as client:
        yield client


async def test_truncation_auto_drops_the_oldest_turns_to_fit_the_window(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    tags = [unique("t1-"), unique("t2-"), unique("t3-")]
    previous = None
    for tag in tags:
        answer = await oai.responses.create(
            model=TINY, input=turn_text(tag), previous_response_id=previous, truncation="auto"
        )
        assert answer.status == "completed", answer.error
        previous = answer.id
    [third] = fake_llm.calls_for(turn_text(tags[2]))
    sent = sent_roles_and_texts(third.body)
    # the first turn (its question and answer) is gone, whole; the rest is in order
    assert [role for role, _ in sent] == ["user", "assistant", "user"]
    assert sent[0][1].startswith(tags[1]) and sent[2][1].startswith(tags[2])
    assert not any(tags[0] in text for _, text in sent)


async def test_a_history_past_the_window_is_refused_naming_the_overflow(
    oai: openai.AsyncOpenAI, fake_llm: FakeLLMServer
) -> None:
    tags = [unique("d1-"), unique("d2-"), unique("d3-")]
    first = await oai.responses.create(model=TINY, input=turn_text(tags[0]))
    second = await oai.responses.create(
        model=TINY, input=turn_text(tags[1]), previous_response_id=first.id
    )
    with pytest.raises(openai.BadRequestError) as refused:
        await oai.responses.create(
            model=TINY, input=turn_text(tags[2]), previous_response_id=second.id
        )
    assert refused.value.code == "context_length_exceeded"
    assert "context window of 1000 tokens" in refused.value.message
    assert "truncation" in refused.value.message
    assert fake_llm.calls_for(turn_text(tags[2])) == []  # nothing went upstream
