"""A conversation's turns, live on every device: two clients of one user follow the same
conversation over the WebSocket and see the same turn, deltas included; one leaves
mid-answer and comes back from its last id with nothing lost or repeated. The SSE
stream of the conversation carries the same events."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
from websockets.asyncio.client import ClientConnection, connect

from infra.db.engine import Database
from tests.conftest import Running, make_tenant
from tests.harness import unique
from tests.sign_in import user_headers
from tests.test_live_socket import channel_events, order, subscribe, ws_url

WORDS = " ".join(f"w{n}" for n in range(40))


async def turn_events(
    ws: ClientConnection, channel: str, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """The conversation channel's events up to the turn's end (or `stop_after` deltas)."""
    ends = ("response.completed", "response.failed")
    return await channel_events(
        ws, channel, stop_after, ends=ends, delta="response.output_text.delta"
    )


async def test_two_devices_see_one_turn_and_a_resume_loses_nothing(
    running: Running, db: Database, client: httpx.AsyncClient
) -> None:
    owner = await make_tenant(db, admin=True)
    person = unique("person-")
    headers = await user_headers(client, owner, person)
    token = headers["Authorization"].split()[1]
    async with openai.AsyncOpenAI(
        base_url=f"{running.url}/v1", api_key=token, max_retries=0, timeout=30
    ) as oai:
        conversation = await oai.conversations.create(metadata={"topic": "live"})
        channel = f"conversation:{conversation.id}"
        async with (
            connect(ws_url(running.url), additional_headers=owner.headers) as laptop,
            connect(ws_url(running.url, token=token)) as phone,
        ):
            await subscribe(laptop, channel)
            await subscribe(phone, channel)
            asking = asyncio.create_task(
                oai.responses.create(
                    model="gpt-fake@pace=30", input=WORDS, conversation=conversation.id
                )
            )
            whole, first_part = await asyncio.gather(
                turn_events(laptop, channel), turn_events(phone, channel, stop_after=3)
            )
        answer = await asking
    # The phone lost its connection mid-answer; it comes back with the last id it saw.
    async with connect(ws_url(running.url, token=token)) as back:
        await subscribe(back, channel, after=first_part[-1]["id"])
        rest = await turn_events(back, channel)
    resumed = first_part + rest
    ids = [m["id"] for m in resumed]
    assert ids == [m["id"] for m in whole], "a gap or a duplicate"
    assert ids == sorted(ids, key=order) and len(set(ids)) == len(ids)
    names = [m["event"] for m in whole]
    # from the ingress: the turn and the user's message; then the worker's
    assert names[:2] == ["response.created", "conversation.item.added"], names
    assert names[-1] == "response.completed"
    deltas = [m["data"]["delta"] for m in whole if m["event"] == "response.output_text.delta"]
    assert len(deltas) > 1  # streamed, not one piece
    assert "".join(deltas) == answer.output_text == f"reply to: {WORDS}"
    added = [m["data"]["item"] for m in whole if m["event"] == "conversation.item.added"]
    assert [i["role"] for i in added] == ["user", "assistant"]
    assert added[1]["id"] == answer.output[0].id

    # The same events over Server-Sent Events, from the start.
    async with client.stream(
        "GET", f"/v1/conversations/{conversation.id}/events", headers=headers
    ) as sse:
        assert sse.status_code == 200
        names_sse: list[str] = []
        async for line in sse.aiter_lines():
            if line.startswith("event: "):
                names_sse.append(line.removeprefix("event: "))
                if names_sse[-1] == "response.completed":
                    break
    assert names_sse == names
