"""Housekeeping done now and then from a loop that runs often (pruning old rows)."""

from __future__ import annotations

import time


class AtMostEvery:
    """`due()` is true at the first call and then at most once every `every_s` seconds."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True
