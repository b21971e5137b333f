"""Old usage claims: counting and deleting the ids the usage group claimed long ago.

Every counted usage event leaves its id in usage_events_seen so that a
redelivery or a replay is not counted again. An id is only needed while
Kafka can still deliver its event; after that it is dead weight. Whether a
cut-off is safe is the caller's decision (ayush.usage_prune).
"""

from __future__ import annotations

from sqlalchemy import text

from infra.db.engine import Database

# Days are counted by the database's own CURRENT_DATE, the one that stamped
# `claimed_on`, so both sides agree on what "today" is.
_OLD = "claimed_on < CURRENT_DATE - CAST(:days AS integer)"


async def count_claims_older_than(db: Database, days: int) -> int:
    async with db.session() as session:
        row = await session.execute(
            text(f"SELECT count(*) FROM usage_events_seen WHERE {_OLD}"), {"days": days}
        )
        return int(row.scalar_one())


async def prune_claims_older_than(db: Database, days: int, pages: int = 2_000) -> int:
    """Delete claims made more than `days` days ago; how many.

    `claimed_on` has no index (it would slow down every claim), so the table
    is walked in ranges of `pages` heap pages, one short transaction each
    (a TID range scan reads only those pages). Pages added meanwhile hold new
    claims only.
    """
    async with db.session() as session:
        size = await session.execute(
            text(
                "SELECT pg_relation_size('usage_events_seen') / "
                "CAST(current_setting('block_size') AS bigint)"
            )
        )
        total_pages = int(size.scalar_one())
    deleted = 0
    for start in range(0, total_pages, pages):
        async with db.transaction() as session:
            result = await session.execute(
                text(
                    "DELETE FROM usage_events_seen WHERE ctid >= CAST(:start AS tid) "
                    f"AND ctid < CAST(:end AS tid) AND {_OLD}"
                ),
                {"start": (start, 0), "end": (start + pages, 0), "days": days},
            )
        deleted += int(result.rowcount)
    return deleted
