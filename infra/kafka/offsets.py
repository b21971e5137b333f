"""Which offset of a partition is safe to commit while many events are in flight."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """Offsets of one partition handed over together, known by the first."""

    tracker: PartitionOffsets
    first: int


def finish_runs(runs: Sequence[Run], but: Sequence[Run] = ()) -> None:
    """Mark `runs` finished, except those in `but` (still in hand)."""
    held = {id(run) for run in but}
    for run in {id(run): run for run in runs if id(run) not in held}.values():
        run.tracker.finished(run.first)


class PartitionOffsets:
    """Tracks the offsets handed out and finished on one partition.

    The committable position is the lowest unfinished offset (or one past the
    highest seen when nothing is in flight): a crash then redoes only
    unfinished work, never skips any.
    """

    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._heap: list[int] = []
        self._next: int | None = None
        self.committed: int | None = None

    def started(self, offset: int, last: int | None = None) -> None:
        """`offset` is in flight; with `last`, it stands for the run `offset..last`."""
        self._in_flight.add(offset)
        heapq.heappush(self._heap, offset)
        end = (offset if last is None else last) + 1
        if self._next is None or end > self._next:
            self._next = end

    def finished(self, offset: int) -> None:
        self._in_flight.discard(offset)
        while self._heap and self._heap[0] not in self._in_flight:
            heapq.heappop(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def committable(self) -> int | None:
        """The position to commit now, or None when it has not moved."""
        if self._next is None:
            return None
        position = self._heap[0] if self._heap else self._next
        if self.committed is not None and position <= self.committed:
            return None
        return position


async def commit(
    consumer: AIOKafkaConsumer,
    offsets: Mapping[TopicPartition, PartitionOffsets],
    only: set[TopicPartition] | None = None,
) -> None:
    """Commit every partition (or those `only`) up to its committable position."""
    positions: dict[TopicPartition, int] = {}
    for tp, tracker in list(offsets.items()):
        if only is not None and tp not in only:
            continue
        position = tracker.committable()
        if position is not None:
            positions[tp] = position
    if not positions:
        return
    try:
        await consumer.commit(positions)
    except Exception as exc:  # a rebalance in progress: the next commit catches up
        log.warning("offset commit failed, will retry: %s", exc)
        return
    for tp, position in positions.items():
        if tp in offsets:
            offsets[tp].committed = position


class Rebalance(ConsumerRebalanceListener):
    """Tracks the partitions assigned; lets `hand_over` finish and commit revoked ones."""

    def __init__(
        self,
        offsets: dict[TopicPartition, PartitionOffsets],
        hand_over: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._offsets = offsets
        self._hand_over = hand_over

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._hand_over(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._offsets.setdefault(tp, PartitionOffsets())
