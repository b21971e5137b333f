"""The WebSocket /v1/ws: two clients of one user see the same answer and a resume loses
nothing; a client that stops reading is cut off; refusals."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from infra.channels import Channels, user_channel
from infra.db.engine import Database
from infra.local_stack import ServiceAddresses
from infra.local_stack.process import free_port
from tests.conftest import Running, TenantKey, ingress_alone, make_tenant, namespace_settings
from tests.fakes.llm import FakeLLMServer
from tests.harness import Platform, eventually, unique
from tests.sign_in import user_headers

WORDS = " ".join(f"w{n}" for n in range(40))


def ws_url(base: str, **query: str) -> str:
    url = base.replace("http://", "ws://") + "/v1/ws"
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(orjson.dumps(message).decode())


async def receive(ws: ClientConnection, timeout_s: float = 30) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        async with asyncio.timeout(timeout_s):
            message: dict[str, Any] = orjson.loads(await ws.recv())
        if message["type"] != "ping":
            return message


async def subscribe(ws: ClientConnection, channel: str, after: str | None = None) -> None:
    await send(ws, type="subscribe", channel=channel, **({"after": after} if after else {}))
    answer = await receive(ws)
    while answer["type"] == "event" and answer["channel"] != channel:
        answer = await receive(ws)  # another channel's news, on its way already
    assert answer == {"type": "subscribed", "channel": channel}, answer


async def channel_events(
    ws: ClientConnection,
    channel: str,
    stop_after: int | None = None,
    *,
    ends: tuple[str, ...] = ("done",),
    delta: str = "delta",
) -> list[dict[str, Any]]:
    """The channel's events up to one of `ends` (or the first `stop_after` `delta`s)."""
    seen: list[dict[str, Any]] = []
    while True:
        message = await receive(ws)
        if message.get("channel") != channel:
            continue
        assert message["type"] == "event", message
        seen.append(message)
        deltas = [m for m in seen if m["event"] == delta]
        if message["event"] in ends or (stop_after and len(deltas) >= stop_after):
            return seen


def order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq)


async def test_two_clients_of_a_user_see_one_answer_and_a_resume_has_no_gap_or_duplicate(
    running: Running, db: Database, client: httpx.AsyncClient
) -> None:
    owner = await make_tenant(db, admin=True)
    person = unique("person-")
    token = (await user_headers(client, owner, person))["Authorization"].split()[1]
    url = running.url
    async with (
        connect(ws_url(url), additional_headers=owner.headers) as keyed,
        connect(ws_url(url, token=token)) as signed_in,
    ):
        await subscribe(keyed, f"user:{person}")
        await subscribe(signed_in, "user")
        body = {
            "kind": "chat",
            "model": "gpt-fake@pace=30",
            "messages": [{"role": "user", "content": WORDS}],
            "user_id": person,
        }
        accepted = await client.post("/v1/jobs", json=body, headers=owner.headers)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        for ws in (keyed, signed_in):
            queued = await receive(ws)
            assert queued["event"] == "job.status" and queued["data"] == {
                "job_id": job_id,
                "status": "queued",
                "kind": "chat",
                "model": "gpt-fake@pace=30",
            }
            await subscribe(ws, f"job:{job_id}")
        channel = f"job:{job_id}"
        whole, first_part = await asyncio.gather(
            channel_events(keyed, channel), channel_events(signed_in, channel, stop_after=3)
        )
    # The signed-in client left mid-answer; it comes back with the last id it saw.
    assert first_part[-1]["event"] == "delta"
    async with connect(
        ws_url(url), additional_headers={"Authorization": f"Bearer {token}"}
    ) as back:
        await subscribe(back, channel, after=first_part[-1]["id"])
        rest = await channel_events(back, channel)
    resumed = first_part + rest
    ids = [m["id"] for m in resumed]
    assert ids == [m["id"] for m in whole], "a gap or a duplicate"
    assert ids == sorted(ids, key=order) and len(set(ids)) == len(ids)
    text = "".join(m["data"]["text"] for m in resumed if m["event"] == "delta")
    assert text == "".join(m["data"]["text"] for m in whole if m["event"] == "delta")
    assert text == f"reply to: {WORDS}"
    assert whole[-2]["event"] == "result" and whole[-1]["event"] == "done"


async def test_the_user_feed_tells_a_job_from_queued_to_succeeded(
    running: Running, db: Database, client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    person = unique("person-")
    async with connect(ws_url(running.url), additional_headers=tenant.headers) as ws:
        await subscribe(ws, f"user:{person}")
        body = {
            "kind": "chat",
            "model": "local-echo",
            "messages": [{"role": "user", "content": "hello"}],
            "user_id": person,
        }
        accepted = await client.post("/v1/jobs", json=body, headers=tenant.headers)
        job_id = accepted.json()["id"]
        statuses: list[str] = []
        while "succeeded" not in statuses:
            message = await receive(ws)
            assert message["event"] == "job.status" and message["data"]["job_id"] == job_id
            statuses.append(message["data"]["status"])
        assert statuses == ["queued", "running", "succeeded"]
        # A job of another user is not on this feed: the next thing is the keepalive's quiet.
        other = {**body, "user_id": unique("other-")}
        await client.post("/v1/jobs", json=other, headers=tenant.headers)
        await send(ws, type="unsubscribe", channel=f"user:{person}")
        assert await receive(ws) == {"type": "unsubscribed", "channel": f"user:{person}"}


async def test_a_bad_or_refused_subscription_gets_an_error_and_the_socket_stays_usable(
    running: Running, db: Database, client: httpx.AsyncClient
) -> None:
    owner = await make_tenant(db, admin=True)
    person = unique("person-")
    token = (await user_headers(client, owner, person))["Authorization"].split()[1]
    stranger = await make_tenant(db)
    # A job of another tenant, and a job of another user of this tenant.
    theirs = await client.post(
        "/v1/jobs",
        json={
            "kind": "chat",
            "model": "local-echo",
            "messages": [{"role": "user", "content": "x"}],
        },
        headers=stranger.headers,
    )
    mine_not = await client.post(
        "/v1/jobs",
        json={
            "kind": "chat",
            "model": "local-echo",
            "messages": [{"role": "user", "content": "x"}],
            "user_id": "someone-else",
        },
        headers=owner.headers,
    )
    async with connect(ws_url(running.url, token=token)) as ws:
        refused = {
            f"job:{uuid.uuid4()}": "no job",
            f"job:{theirs.json()['id']}": "no job",
            f"job:{mine_not.json()['id']}": "no job",
            "job:not-a-uuid": "unknown channel",
            f"conversation:{uuid.uuid4()}": "no conversation",
            "user:someone-else": "own feed",
            "nonsense": "unknown channel",
        }
        for channel, why in refused.items():
            await send(ws, type="subscribe", channel=channel)
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["channel"] == channel, answer
            assert why in answer["message"], answer
        await send(ws, type="subscribe", channel="user", after="not-an-id")
        answer = await receive(ws)
        assert answer["type"] == "error" and "after" in answer["message"]
        for bad in ("not json", "[1]", '{"type": "dance"}', '{"type": "subscribe"}'):
            await ws.send(bad)
            assert (await receive(ws))["type"] == "error"
        await subscribe(ws, "user")
    async with connect(ws_url(running.url), additional_headers=owner.headers) as ws:
        await send(ws, type="subscribe", channel="user")
        answer = await receive(ws)
        assert answer["type"] == "error" and "user:<user_id>" in answer["message"]


async def test_a_socket_without_a_good_credential_is_refused_before_it_opens(
    running: Running,
) -> None:
    for headers, query in (
        ({}, {}),
        ({"Authorization": "Bearer ak_not-a-key"}, {}),
        ({}, {"token": "not-a-token"}),
    ):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(running.url, **query), additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401
        assert b"unauthorized" in refused.value.response.body


@pytest.fixture(scope="module")
def slow_ingress(
    services: ServiceAddresses, fake_llm: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, str]]:
    """An ingress with a small send queue, a short send timeout and its /metrics."""
    port = free_port()
    env = {
        "AYUSH_WS_SEND_QUEUE": "8",
        "AYUSH_WS_SEND_TIMEOUT_S": "1",
        "AYUSH_WS_PING_S": "0.5",
        "AYUSH_WS_MAX_SUBSCRIPTIONS": "2",
        "AYUSH_METRICS_PORT": str(port),
        "AYUSH_METRICS_HOST": "127.0.0.1",
    }
    logs: Path = tmp_path_factory.mktemp("slow-socket")
    with ingress_alone(services, fake_llm, logs, env) as platform:
        yield platform, f"http://127.0.0.1:{port}/metrics"


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
async def slow_channels(
    services: ServiceAddresses, slow_ingress: tuple[Platform, str]
) -> AsyncIterator[Channels]:
    platform, _ = slow_ingress
    channels = Channels(namespace_settings(services, platform.env["AYUSH_TOPIC_PREFIX"]))
    yield channels
    await channels.close()


async def test_a_client_that_stops_reading_is_closed_and_the_send_queue_stays_bounded(
    slow_ingress: tuple[Platform, str], slow_channels: Channels, db: Database
) -> None:
    platform, metrics_url = slow_ingress
    tenant = await make_tenant(db)
    person = unique("person-")
    feed = user_channel(tenant.tenant_id, person)  # type: ignore[arg-type]
    filler = "x" * 8192
    async with (
        httpx.AsyncClient(timeout=10) as http,
        connect(
            ws_url(platform.url), additional_headers=tenant.headers, max_queue=1, max_size=None
        ) as ws,
    ):
        # Quiet: the server's heartbeat comes.
        async with asyncio.timeout(10):
            assert orjson.loads(await ws.recv()) == {"type": "ping"}
        await subscribe(ws, f"user:{person}")

        # The client reads no more; the feed floods until the server gives up on it.
        async def cut_off() -> bool:
            await slow_channels.publish([(feed, "flood", {"filler": filler})] * 200)
            text = (await http.get(metrics_url)).text
            return metric(text, 'ayush_ws_closed_total{reason="slow_consumer"}') >= 1

        await eventually(cut_off, 60, "the slow client to be closed")
        peak = metric((await http.get(metrics_url)).text, "ayush_ws_send_queue_peak")
        assert 1 <= peak <= 8
        # Reading again, the client finds what was on the wire, then the close.
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "slow consumer"


async def test_a_connection_holds_no_more_subscriptions_than_allowed(
    slow_ingress: tuple[Platform, str], db: Database
) -> None:
    platform, _ = slow_ingress
    tenant = await make_tenant(db)
    async with connect(ws_url(platform.url), additional_headers=tenant.headers) as ws:
        await subscribe(ws, "user:a")
        await subscribe(ws, "user:b")
        await subscribe(ws, "user:b")  # again, from another point: still two
        await send(ws, type="subscribe", channel="user:c")
        refused = await receive(ws)
        assert refused["type"] == "error" and "AYUSH_WS_MAX_SUBSCRIPTIONS" in refused["message"]
        await send(ws, type="unsubscribe", channel="user:a")
        assert await receive(ws) == {"type": "unsubscribed", "channel": "user:a"}
        await subscribe(ws, "user:c")


async def test_the_events_of_a_conversation_nobody_can_see_are_not_found(
    client: httpx.AsyncClient, tenant: TenantKey
) -> None:
    url = f"/v1/conversations/{uuid.uuid4()}/events"
    assert (await client.get(url)).status_code == 401
    unknown = await client.get(url, headers=tenant.headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


async def test_an_ingress_with_sockets_that_followed_channels_stops_at_once(
    services: ServiceAddresses,
    fake_llm: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
    db: Database,
) -> None:
    tenant = await make_tenant(db)
    env = {"AYUSH_SHUTDOWN_DEADLINE_S": "20"}
    with ingress_alone(services, fake_llm, tmp_path_factory.mktemp("stop"), env) as platform:
        async with connect(ws_url(platform.url), additional_headers=tenant.headers) as left:
            await subscribe(left, "user:a")
        async with connect(ws_url(platform.url), additional_headers=tenant.headers) as staying:
            await subscribe(staying, "user:b")
            started = time.monotonic()
            stopping = asyncio.get_running_loop().run_in_executor(None, platform.stop)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(20):
                    while True:
                        await staying.recv()
            await stopping
        assert time.monotonic() - started < 5, "the ingress waited on its sockets' reads"
