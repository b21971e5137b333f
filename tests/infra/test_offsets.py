"""Which offset is safe to commit while events finish out of order."""

from infra.kafka.offsets import PartitionOffsets


def test_commits_only_up_to_the_lowest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    assert offsets.committable() is None
    for offset in (10, 11, 12, 13):
        offsets.started(offset)
    assert offsets.committable() == 10
    offsets.finished(12)
    offsets.finished(11)
    assert offsets.committable() == 10  # 10 still runs: a crash must redo it
    offsets.finished(10)
    assert offsets.committable() == 13
    offsets.committed = 13
    assert offsets.committable() is None  # nothing new to commit
    offsets.finished(13)
    assert offsets.committable() == 14
    assert offsets.in_flight == 0
