"""Live channels in Redis: ordered appends in one call, resumable reads, and the user feed
a job's stream entries carry along in the same script call."""

from __future__ import annotations

import uuid

from infra.channels import (
    Channels,
    batch_progress_feed,
    conversation_channel,
    job_status_feed,
    user_channel,
)
from infra.live_streams import JobStreams, StreamPosition
from infra.local_stack import ServiceAddresses
from infra.settings import Settings
from producers.ingress.job_stream import follow, resume_point, sse
from tests.harness import unique


def channel_settings(services: ServiceAddresses) -> Settings:
    return services.apply(Settings(topic_prefix=unique("ch") + "."))


async def test_channels_publish_in_order_and_read_on_from_any_id(
    services: ServiceAddresses,
) -> None:
    channels = Channels(channel_settings(services))
    conversation = conversation_channel(uuid.uuid4())
    feed = user_channel(uuid.uuid4(), "user-1")
    try:
        ids = await channels.publish(
            [
                (conversation, "turn.started", {"n": 1}),
                (feed, "job.status", {"status": "queued"}),
                (conversation, "turn.done", {"n": 2}),
            ]
        )
        assert len(ids) == 3
        read = await channels.read(conversation, block_ms=None)
        assert [(e.id, e.type, e.data) for e in read] == [
            (ids[0], "turn.started", {"n": 1}),
            (ids[2], "turn.done", {"n": 2}),
        ]
        assert [e.id for e in await channels.read(conversation, ids[0], block_ms=None)] == [ids[2]]
        assert [e.data for e in await channels.read(feed, block_ms=None)] == [{"status": "queued"}]
        assert await channels.position(conversation, ids[0]) == StreamPosition(True, False)
        assert await channels.position(conversation, "1-1") == StreamPosition(
            True, False
        )  # trimmed
        assert await channels.position(conversation, "99999999999999-0") == StreamPosition(
            False, False
        )
        assert await channels.position(user_channel(uuid.uuid4(), "x"), "1-1") is None
        assert await channels.exists(conversation)
        assert await channels.publish([]) == []
    finally:
        await channels.close()


async def test_job_entries_carry_their_user_feed_entries_in_the_same_call(
    services: ServiceAddresses,
) -> None:
    settings = channel_settings(services)
    streams, channels = JobStreams(settings), Channels(settings)
    tenant, job_id, batch_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    feed = user_channel(tenant, "person")
    try:
        mirror = job_status_feed(tenant, "person", job_id, "succeeded", "chat", "m")
        last = await streams.append_many(
            job_id, [("result", {"text": "hi"}), ("done", {"status": "succeeded"})], also=mirror
        )
        progress = {"status": "in_progress", "request_counts": {"total": 2}}
        await streams.append(
            batch_id,
            "progress",
            progress,
            also=batch_progress_feed(tenant, "person", f"batch_{batch_id.hex}", progress),
        )
        job = await streams.read(job_id, block_ms=None)
        assert [e.type for e in job] == ["result", "done"] and job[-1].id == last
        seen = await channels.read(feed, block_ms=None)
        assert [(e.type, e.data) for e in seen] == [
            (
                "job.status",
                {"job_id": str(job_id), "status": "succeeded", "kind": "chat", "model": "m"},
            ),
            ("batch.progress", {"batch_id": f"batch_{batch_id.hex}", **progress}),
        ]
        # A job (or batch) of no user tells no feed.
        assert job_status_feed(tenant, None, job_id, "queued", "chat", "m") == []
        assert batch_progress_feed(tenant, None, "batch_x", progress) == []
    finally:
        await streams.close()
        await channels.close()


async def test_a_conversation_stream_resumes_after_its_last_event_id_and_stays_open(
    services: ServiceAddresses,
) -> None:
    channels = Channels(channel_settings(services))
    name = conversation_channel(uuid.uuid4())
    stream = channels.stream(name)
    try:
        # Nothing published yet: a client waits (keepalives) rather than being told "gone".
        start = await resume_point(stream, None, replay_end=None)
        frames = sse(follow(stream, start.after, terminal=None, keepalive_ms=50))
        assert await anext(frames) == b"retry: 1000\n\n"
        assert await anext(frames) == b": keepalive\n\n"
        ids = await channels.publish([(name, "item", {"n": n}) for n in range(3)])
        got = [await anext(frames) for _ in range(3)]
        assert got[0].startswith(f"id: {ids[0]}\nevent: item\n".encode())
        assert got[2].endswith(b'data: {"n":2}\n\n')
        # A `done` on a channel does not end it: it has no last event.
        await channels.publish([(name, "done", {})])
        assert (await anext(frames)).startswith(b"id: ")
        assert await anext(frames) == b": keepalive\n\n"
        await frames.aclose()

        resumed = await resume_point(stream, ids[1], replay_end=None)
        assert resumed.after == ids[1] and not resumed.ended
        again = follow(stream, resumed.after, terminal=None, keepalive_ms=50)
        first = await anext(again)
        assert first is not None and first.id == ids[2]
        await again.aclose()
    finally:
        await channels.close()
