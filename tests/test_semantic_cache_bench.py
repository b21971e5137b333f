"""bench/semantic_cache.py: its data set is as promised, and its curve runs the real store."""

from __future__ import annotations

from bench.semantic_cache import DATA, THRESHOLDS, load, run
from infra.db.engine import Database
from infra.embeddings.hashing import HashingEmbedder


def test_the_data_set_has_a_hundred_pairs_of_each_kind() -> None:
    data = load(DATA)
    pairs = data["paraphrases"] + data["near_misses"]
    assert len(data["paraphrases"]) >= 100 and len(data["near_misses"]) >= 100
    assert len({p["id"] for p in pairs}) == len(pairs)
    assert all(p["cached"].strip() and p["asked"].strip() for p in pairs)
    assert all(p["cached"] != p["asked"] for p in pairs)


async def test_the_bench_reports_the_trade_off_curve(db: Database) -> None:
    data = load(DATA)
    subset = {"paraphrases": data["paraphrases"][:12], "near_misses": data["near_misses"][-12:]}
    figures = await run(db, HashingEmbedder(384), subset)
    curve = figures["thresholds"]
    assert [p["threshold"] for p in curve] == THRESHOLDS
    assert THRESHOLDS[0] == 0.8 and THRESHOLDS[-1] == 0.99 and len(THRESHOLDS) == 20
    hits = [p["hit_rate"] for p in curve]
    false_hits = [p["false_hit_rate"] for p in curve]
    assert hits == sorted(hits, reverse=True) and false_hits == sorted(false_hits, reverse=True)
    assert 0 <= figures["default_false_hit_rate"] <= 1 and 0 <= figures["default_hit_rate"] <= 1
    assert figures["paraphrases"] == figures["near_misses"] == 12
    # The last near misses differ in a number: another partition, never a hit.
    assert figures["near_miss_similarity"]["min"] == -1.0
