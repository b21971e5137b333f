"""Semantic cache: how many reworded questions hit, and how many different ones hit wrongly.

    uv run python bench/semantic_cache.py [--data bench/data/semantic_cache.json]
                                          [--embedder minilm|hashing]

The data set (bench/data/semantic_cache.json, written by hand for this
repository) has two sets of pairs, each a question that was cached and a
question asked later:
- `paraphrases` (108): the same question reworded ("What is the capital of
  France?" / "Which city is the capital of France?"); the later one should be
  served the cached answer;
- `near_misses` (111): questions one word apart whose answers differ ("capital
  of Austria" / "capital of Australia", "convert 5 km to miles" / "convert 5
  miles to km"); the later one must not be.

Each pair goes through the real path: the cached question is embedded with the
embedder (the memory embedder's default, MiniLM, unless `--embedder` says) and
stored with SemanticCacheStore in Postgres, in a partition of its own (as two
requests of the same model, parameters and history would share one, and
with the question's numbers in it, as the platform's key has them); the asked
question is embedded and looked up there: with other numbers it finds nothing.
`hit_rate` at a threshold is the share of paraphrase pairs whose similarity
reaches it; `false_hit_rate` the share of near-miss pairs that do.
`crowded_wrong_hits` puts every cached paraphrase in one partition and counts
asked ones whose nearest row is another question's yet reaches the threshold.

Prints one JSON object: the curve (`thresholds`: 0.80..0.99), the platform's
default threshold (AYUSH_SEMANTIC_CACHE_THRESHOLD) and its figures, the
similarity quantiles of each set, and the counts. Uses the services named in
the environment, else starts a local stack; the bench's rows are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench.services import bench_services
from consumers.groups.model_calls.semantic import numbers
from infra.db.engine import Database
from infra.db.semantic_cache import Entry, SemanticCacheStore
from infra.embeddings.base import Embedder
from infra.settings import Settings
from infra.vectors.factory import build_embedder

DATA = Path(__file__).with_name("data") / "semantic_cache.json"
DEFAULT_EMBEDDER = Settings.model_fields["memory_embedder"].default
DEFAULT_THRESHOLD = Settings.model_fields["semantic_cache_threshold"].default
THRESHOLDS = [round(0.80 + i / 100, 2) for i in range(20)]
TTL_S = 3600


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def similarities(
    store: SemanticCacheStore,
    embedder: Embedder,
    tenant: uuid.UUID,
    pairs: list[dict[str, Any]],
    *,
    crowded: bool = False,
) -> list[tuple[str, str | None, float]]:
    """Per pair: its id, the id of the nearest cached row found, and its similarity.
    Each pair in its own partition, or (`crowded`) all in one."""
    cached = await embedder.embed([p["cached"] for p in pairs])
    asked = await embedder.embed([p["asked"] for p in pairs])

    def entry(pair: dict[str, Any], vector: list[float], text: str) -> Entry:
        # The platform's partition key holds the question's numbers: so does this one.
        partition = "crowded" if crowded else pair["id"]
        partition += "/" + ",".join(numbers(text))
        return Entry(tenant, partition, embedder.model, vector)

    for pair, vector in zip(pairs, cached, strict=True):
        await store.put(entry(pair, vector, pair["cached"]), {"id": pair["id"]}, 0, TTL_S, 100_000)
    found: list[tuple[str, str | None, float]] = []
    for pair, vector in zip(pairs, asked, strict=True):
        nearest = await store.nearest(entry(pair, vector, pair["asked"]), threshold=-1.0)
        if nearest is None:
            found.append((pair["id"], None, -1.0))
        else:
            found.append((pair["id"], nearest.answer["id"], nearest.similarity))
    return found


def share(values: list[bool]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def curve(
    paraphrases: list[float], near_misses: list[float], crowded: list[tuple[str, str | None, float]]
) -> list[dict[str, float]]:
    return [
        {
            "threshold": t,
            "hit_rate": share([s >= t for s in paraphrases]),
            "false_hit_rate": share([s >= t for s in near_misses]),
            "crowded_wrong_hits": share([i != n and s >= t for i, n, s in crowded]),
        }
        for t in THRESHOLDS
    ]


def quantiles(values: list[float]) -> dict[str, float]:
    cut = statistics.quantiles(values, n=10)
    return {
        "min": round(min(values), 4),
        "p10": round(cut[0], 4),
        "median": round(statistics.median(values), 4),
        "p90": round(cut[-1], 4),
        "max": round(max(values), 4),
    }


async def run(db: Database, embedder: Embedder, data: dict[str, Any]) -> dict[str, Any]:
    """The trade-off curve of `embedder` over the data set (rows deleted afterwards)."""
    store = SemanticCacheStore(db)
    tenant, crowd = uuid.uuid4(), uuid.uuid4()
    try:
        para = await similarities(store, embedder, tenant, data["paraphrases"])
        near = await similarities(store, embedder, tenant, data["near_misses"])
        crowded = await similarities(store, embedder, crowd, data["paraphrases"], crowded=True)
    finally:
        async with db.transaction() as session:
            await session.execute(
                text("DELETE FROM semantic_cache WHERE tenant_id IN (:t, :c)"),
                {"t": tenant, "c": crowd},
            )
    para_s = [s for _, _, s in para]
    near_s = [s for _, _, s in near]
    points = curve(para_s, near_s, crowded)
    at_default = [s >= DEFAULT_THRESHOLD for s in para_s], [s >= DEFAULT_THRESHOLD for s in near_s]
    return {
        "embedder": embedder.model,
        "default_threshold": DEFAULT_THRESHOLD,
        "default_hit_rate": share(at_default[0]),
        "default_false_hit_rate": share(at_default[1]),
        "thresholds": points,
        "paraphrase_similarity": quantiles(para_s),
        "near_miss_similarity": quantiles(near_s),
        "paraphrases": len(para),
        "near_misses": len(near),
        "store": "pgvector",
    }


async def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    assert settings.database_url is not None
    embedder = build_embedder(settings.model_copy(update={"memory_embedder": args.embedder}))
    db = Database(settings.database_url, pool_size=2)
    try:
        return await run(db, embedder, load(args.data))
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, choices=["minilm", "hashing"])
    arguments = parser.parse_args()
    with bench_services() as services:
        print(json.dumps(asyncio.run(main(arguments, services.settings))))
