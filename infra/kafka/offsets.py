"""Which offset of a partition is safe to commit while many events are in flight."""

from __future__ import annotations

import heapq


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
