"""Where every topic and consumer group stands: end offsets, commits, lag, members."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest,
    DescribeGroupsRequest_v3,
    DescribeGroupsResponse_v3,
)

from infra.settings import Settings
from schemas import topics as registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        # A group that never committed has everything still to read.
        return self.end - (self.committed or 0)


@dataclass
class GroupStatus:
    group: str
    state: str
    # None when the broker's description of the group could not be read.
    members: int | None
    partitions: list[PartitionLag] = field(default_factory=list)
    note: str | None = None

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class TopicStatus:
    topic: str
    partitions: int
    end_offsets: dict[int, int]

    @property
    def messages(self) -> int:
        return sum(self.end_offsets.values())


@dataclass(frozen=True)
class ClusterStatus:
    topics: list[TopicStatus]
    groups: list[GroupStatus]


async def cluster_status(settings: Settings, groups: Mapping[str, Sequence[str]]) -> ClusterStatus:
    """The declared topics and the given groups ({group: topics it reads}), in this prefix."""
    bootstrap, _, _ = settings.require_services()
    names = [settings.topic(n) for t in registry.ALL for n in (t.name, t.dead_letter)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = {name: sorted(cluster.partitions_for_topic(name) or ()) for name in names}
        all_tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        ends = await consumer.end_offsets(all_tps) if all_tps else {}
        topic_rows = [
            TopicStatus(t, len(ps), {p: ends[TopicPartition(t, p)] for p in ps})
            for t, ps in partitions.items()
        ]
        full_groups = {
            settings.group(g): [settings.topic(t) for t in ts] for g, ts in groups.items()
        }
        described, note = await _describe(admin, list(full_groups))
        group_rows = []
        for group, group_topics in full_groups.items():
            state, members = described.get(group, ("Unknown", None if note else 0))
            committed = await admin.list_consumer_group_offsets(group)
            row = GroupStatus(group, state, members, note=note)
            for tp in (tp for tp in all_tps if tp.topic in group_topics):
                offset = committed.get(tp)
                position = offset.offset if offset is not None and offset.offset >= 0 else None
                row.partitions.append(PartitionLag(tp.topic, tp.partition, ends[tp], position))
            group_rows.append(row)
        return ClusterStatus(topic_rows, group_rows)
    finally:
        await consumer.stop()
        await admin.close()


async def _describe(
    admin: AIOKafkaAdminClient, groups: list[str]
) -> tuple[dict[str, tuple[str, int]], str | None]:
    """State and member count per group, or a note saying why they are unknown.

    A broker whose answer still cannot be decoded (the reader then closes the
    connection) leaves the members unknown; offsets and lag come from other
    requests and are still worth showing.
    """
    if not groups:
        return {}, None
    found: dict[str, tuple[str, int]] = {}
    try:
        for response in await _describe_groups(admin, groups):
            for group in response.to_object()["groups"]:
                found[group["group"]] = (group["state"] or "Empty", len(group["members"]))
    except (ValueError, struct.error, KafkaConnectionError) as exc:
        log.warning("could not read the broker's consumer group description: %s", exc)
        return {}, f"members unknown: the broker's group description could not be read ({exc})"
    return found, None


class _DescribeGroupsV3(DescribeGroupsRequest_v3):
    # aiokafka reads a v3 answer with the v2 layout, which lacks each group's
    # authorized_operations: every group after the first is then read from the
    # wrong bytes ("Buffer underrun decoding string"). Kafka 4 no longer
    # answers v0, so clients settle on v3 there.
    RESPONSE_TYPE = DescribeGroupsResponse_v3


class _DescribeGroups(DescribeGroupsRequest):
    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class is DescribeGroupsRequest_v3:
            request_struct_class = _DescribeGroupsV3
        return super().build(request_struct_class)


async def _describe_groups(admin: AIOKafkaAdminClient, groups: list[str]) -> list[Any]:
    """aiokafka's describe_consumer_groups, with v3 answers decoded by their own layout."""
    by_node: dict[int, list[str]] = {}
    for group in groups:
        by_node.setdefault(await admin.find_coordinator(group), []).append(group)
    return [
        await admin._send_request(_DescribeGroups(members), node)
        for node, members in by_node.items()
    ]


async def group_lag(settings: Settings, group: str, topics: Sequence[str]) -> int | None:
    """A group's lag over its topics now; None when Kafka does not answer."""
    try:
        status = await cluster_status(settings, {group: topics})
    except (KafkaError, OSError) as exc:
        log.warning("lag of %s not read: %s", group, exc)
        return None
    return status.groups[0].lag if status.groups else None
