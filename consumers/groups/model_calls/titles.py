"""A conversation's title, written by a cheap model after its first answered turn.

The routing file names the model (`[conversations] title_model`); without it,
conversations stay untitled. The title call is billed like any call (its own
`usage.recorded`, under an id derived from the turn's request, so a turn tried
again is billed once) and published as `conversation.updated`, which the
conversations projection replays; a title that fails to come is logged, never
a failed turn.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from consumers.groups.model_calls.outcomes import follow_up
from consumers.groups.model_calls.ports import Ports
from infra.db import titles
from infra.errors import AyushError
from infra.providers.base import ChatRequest, Message
from schemas import conversations as conversation_events
from schemas import jobs as job_events
from schemas import topics
from schemas.envelope import Envelope
from schemas.ids import derived_id

log = logging.getLogger(__name__)

MAX_TITLE = 80
PROMPT = (
    "Write a title of at most six words for the conversation below: its topic, in the "
    "language of the user. Answer with the title alone, without quotes or a final period."
)


async def title_after_turn(
    raw: Envelope[Any],
    request: job_events.JobRequested,
    conversation_id: uuid.UUID,
    user_text: str,
    answer_text: str,
    ports: Ports,
) -> str | None:
    """Title the conversation if it has none yet and a title model is set; the title."""
    model = ports.gateway.config.title_model
    if model is None or not await titles.untitled(ports.db, raw.tenant_id, conversation_id):
        return None
    prompt = f"User: {user_text[:2000]}\n\nAssistant: {answer_text[:2000]}"
    chat = ChatRequest(
        model=model,
        messages=[Message("system", PROMPT), Message("user", prompt)],
        max_tokens=24,
        temperature=0.2,
    )
    try:
        completion, served = await ports.gateway.chat(model, chat, _quiet, _quiet_retry)
        cost = ports.gateway.catalog.cost(
            served.model,
            served.deployment.model,
            completion.input_tokens,
            completion.output_tokens,
            completion.cached_input_tokens,
            completion.cache_write_input_tokens,
        )
    except AyushError as exc:
        log.warning("no title for conversation %s: %s", conversation_id, exc)
        return None
    title = clean_title(completion.text)
    if not title or not await titles.set_title(ports.db, raw.tenant_id, conversation_id, title):
        return None
    usage = job_events.UsageRecorded(
        # Its own id, not the turn's: the turn's usage settles the turn's reservation.
        job_id=derived_id(request.job_id, "title"),
        api_key_id=request.api_key_id,
        user_id=request.job.user_id,
        provider=served.provider,
        model=served.model,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=cost,
        extra={"purpose": "conversation_title"},
    )
    updated = conversation_events.ConversationUpdated(conversation_id=conversation_id, title=title)
    await ports.publisher.publish_many(
        [
            (
                topics.CONVERSATION_EVENTS.name,
                follow_up(raw, conversation_events.CONVERSATION_UPDATED, updated, "title"),
            ),
            (
                topics.USAGE_RECORDED.name,
                follow_up(raw, job_events.USAGE_RECORDED, usage, "title-usage"),
            ),
        ]
    )
    return title


def clean_title(text: str) -> str:
    """The model's answer as a title: one line, no quotes or trailing period, bounded."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.strip("\"'\u201c\u201d\u2018\u2019*# ").removeprefix("Title:").strip().rstrip(".")
    return line[:MAX_TITLE].strip()


async def _quiet(text: str) -> None:
    return None


async def _quiet_retry(info: dict[str, Any]) -> None:
    return None
