"""`ayush usage prune`: old usage claims go, claims a replay still needs stay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from ayush.usage_prune import DAY, parse_days, replay_window
from infra.db.engine import Database
from infra.db.usage_retention import prune_claims_older_than
from infra.kafka.admin import Retention, create_topics, topic_retention
from infra.local_stack import ServiceAddresses
from schemas import topics
from tests.conftest import namespace_settings
from tests.harness import unique
from tests.test_cli import ayush
from tests.usage_tools import claimed_count

DECLARED = timedelta(milliseconds=topics.USAGE_RECORDED.retention_ms)


async def claim_days_ago(db: Database, days: int, count: int) -> set[uuid.UUID]:
    ids = {uuid.uuid4() for _ in range(count)}
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO usage_events_seen (event_id, claimed_on) "
                "SELECT unnest(CAST(:ids AS uuid[])), CURRENT_DATE - CAST(:days AS integer)"
            ),
            {"ids": list(ids), "days": days},
        )
    return ids


async def test_prune_deletes_only_claims_older_than_asked(
    services: ServiceAddresses, db: Database
) -> None:
    ancient = await claim_days_ago(db, 500, 30)
    old = await claim_days_ago(db, 420, 4)
    kept = await claim_days_ago(db, 399, 5) | await claim_days_ago(db, 0, 5)
    # The table is walked a range of pages at a time: small ranges, many of them.
    assert await prune_claims_older_than(db, 450, pages=20) >= 30
    assert await claimed_count(db, ancient) == 0 and await claimed_count(db, old) == 4

    dry = await asyncio.to_thread(
        ayush, services, "usage", "prune", "--older-than", "400d", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout and await claimed_count(db, old) == 4

    done = await asyncio.to_thread(ayush, services, "usage", "prune", "--older-than", "400d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted ")
    assert await claimed_count(db, old) == 0
    assert await claimed_count(db, kept) == 10


async def test_prune_refuses_a_cutoff_inside_the_replay_window(
    services: ServiceAddresses, db: Database
) -> None:
    recent = await claim_days_ago(db, 60, 3)
    refused = await asyncio.to_thread(ayush, services, "usage", "prune", "--older-than", "30d")
    assert refused.returncode == 1 and "can still deliver" in refused.stderr
    assert await claimed_count(db, recent) == 3
    bad = await asyncio.to_thread(ayush, services, "usage", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "400d" in bad.stderr


async def test_the_window_is_the_brokers_retention_plus_a_segment_when_longer(
    services: ServiceAddresses,
) -> None:
    settings = namespace_settings(services, unique("prune") + ".")
    await create_topics(settings)
    broker = await topic_retention(settings, topics.USAGE_RECORDED.name)
    assert broker is not None and broker.retention_ms == topics.USAGE_RECORDED.retention_ms
    week = 7 * DAY
    assert replay_window(topics.USAGE_RECORDED, None) == DECLARED + week + DAY
    year = Retention(365 * 24 * 3600 * 1000, 3600 * 1000)
    assert replay_window(topics.USAGE_RECORDED, year) == timedelta(days=365, hours=1) + DAY
    assert replay_window(topics.USAGE_RECORDED, Retention(-1, 1)) is None  # kept forever


@pytest.mark.parametrize(("text_", "days"), [("400d", 400), ("400", 400), (" 98d ", 98)])
def test_ages_are_days(text_: str, days: int) -> None:
    assert parse_days(text_) == days
