"""Time-ordered ids: UUIDv7s sort in the order they were made, within one millisecond too."""

from __future__ import annotations

import time

from schemas.ids import uuid7


def test_uuid7s_made_in_one_millisecond_sort_in_the_order_made() -> None:
    made = [uuid7() for _ in range(2000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    # several fell in one millisecond: their order came from the counter, not the clock
    assert len({u.int >> 80 for u in made}) < len(made)
    assert all(u.version == 7 and u.variant == "specified in RFC 4122" for u in made)


def test_a_uuid7_carries_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after + 1
