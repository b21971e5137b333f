"""Memory quality: does a paraphrased question find the fact it asks about?

    uv run python bench/memory_quality.py [--data bench/data/memory_quality.json]

The data set (bench/data/memory_quality.json, written by hand for this
repository): 33 users, 462 facts, 330 questions. Each question asks about one
fact of its user (`fact`) in other words ("My dog is called Biscuit" / "what's
the name of my puppy?"); the user's other facts are distractors on nearby
topics (the cat and the dog, the sister and the brother), and other users hold
facts on the same topics (another pet, another job). The questions share few
content words with their facts on purpose: `overlap` below reports the mean
share of a question's content words (stopwords out) found in its fact, and
the data set's test keeps it under 0.15. A word-matching embedder scores
by that overlap; a semantic one has to understand the question.

Each embedder (hashing, and the default of `AYUSH_MEMORY_EMBEDDER`'s field,
MiniLM) is run in the same process through the real memory path: every fact is
embedded and stored in Postgres with PgVectorStore (one bench tenant, each user
its own `user_id`, the embedder's model recorded per chunk), and every
question is embedded and searched for its user alone, top 5, as
`POST /v1/memories/search` does. hit@1 / hit@5: the share of questions whose
fact is the first / among the first five hits.

Prints one JSON object: hashing_hit_at_1, hashing_hit_at_5, default_hit_at_1,
default_hit_at_5, the models, the counts, the overlap, the seconds spent
embedding and searching, and each embedder's texts a second. The target is default_hit_at_5 >= 0.9.

Uses the services named in the environment, else starts a local stack; the
bench's rows are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench.services import bench_services
from infra.db.engine import Database
from infra.embeddings.base import Embedder
from infra.settings import Settings
from infra.vectors.base import Chunk, Query
from infra.vectors.factory import build_embedder
from infra.vectors.pgvector import PgVectorStore

DATA = Path(__file__).with_name("data") / "memory_quality.json"
TOP_K = 5
DEFAULT = Settings.model_fields["memory_embedder"].default

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    _WORD.findall(
        """a about after all also am an and any are as at be been before but by can could did do
    does doing for from get gets got had has have how i if in into is it its just like me
    mine my of on or our ours over s so some than that the their them then there these they
    this to up us was we were what whats when where which who whom whose why will with would
    you your yours ve m ll re d t don"""
    )
)


def content_words(sentence: str) -> set[str]:
    return {w for w in _WORD.findall(sentence.lower()) if w not in STOPWORDS}


def overlap(question: str, fact: str) -> float:
    """The share of the question's content words that its fact also has."""
    words = content_words(question)
    return len(words & content_words(fact)) / len(words) if words else 0.0


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def mean_overlap(data: dict[str, Any]) -> float:
    facts = {f["id"]: f["text"] for u in data["users"] for f in u["facts"]}
    return statistics.mean(overlap(q["text"], facts[q["fact"]]) for q in data["questions"])


async def score(
    db: Database, embedder: Embedder, data: dict[str, Any], tenant: uuid.UUID
) -> dict[str, float]:
    """Store every fact with `embedder`, ask every question; hit@1, hit@5 and the seconds."""
    store = PgVectorStore(db, dim=embedder.dim)
    facts = [(u["id"], f) for u in data["users"] for f in u["facts"]]
    memory_of = {f["id"]: uuid.uuid5(tenant, f"{embedder.model}/{f['id']}") for _, f in facts}
    started = time.perf_counter()
    vectors = await embedder.embed([f["text"] for _, f in facts])
    questions = data["questions"]
    asked = await embedder.embed([q["text"] for q in questions])
    embed_s = time.perf_counter() - started
    chunks = [
        Chunk(memory_of[f["id"]], tenant, user, 0, f["text"], embedder.model, vector)
        for (user, f), vector in zip(facts, vectors, strict=True)
    ]
    for start in range(0, len(chunks), 200):
        await store.upsert(chunks[start : start + 200])
    started = time.perf_counter()
    at_1 = at_5 = 0
    for question, vector in zip(questions, asked, strict=True):
        query = Query(tenant, question["user"], vector, embedder.model, top_k=TOP_K)
        found = [hit.memory_id for hit in await store.search(query)]
        at_1 += found[:1] == [memory_of[question["fact"]]]
        at_5 += memory_of[question["fact"]] in found
    return {
        "hit_at_1": round(at_1 / len(questions), 4),
        "hit_at_5": round(at_5 / len(questions), 4),
        "embed_s": round(embed_s, 2),
        "embed_per_s": round((len(facts) + len(questions)) / embed_s, 1),
        "search_s": round(time.perf_counter() - started, 2),
    }


async def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    assert settings.database_url is not None
    data = load(args.data)
    embedders = {
        "hashing": build_embedder(settings.model_copy(update={"memory_embedder": "hashing"})),
        "default": build_embedder(settings.model_copy(update={"memory_embedder": DEFAULT})),
    }
    tenant = uuid.uuid4()
    db = Database(settings.database_url, pool_size=4)
    figures: dict[str, Any] = {}
    try:
        for name, embedder in embedders.items():
            result = await score(db, embedder, data, tenant)
            figures |= {f"{name}_{key}": value for key, value in result.items()}
            figures[f"{name}_model"] = embedder.model
    finally:
        async with db.transaction() as session:
            await session.execute(
                text("DELETE FROM memory_chunks WHERE tenant_id = :t"), {"t": tenant}
            )
        await db.close()
    return {
        **{key: figures.pop(key) for key in sorted(figures) if key.endswith(("_1", "_5"))},
        **figures,
        "store": "pgvector",
        "top_k": TOP_K,
        "users": len(data["users"]),
        "facts": sum(len(u["facts"]) for u in data["users"]),
        "questions": len(data["questions"]),
        "mean_question_fact_overlap": round(mean_overlap(data), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    arguments = parser.parse_args()
    with bench_services() as services:
        print(json.dumps(asyncio.run(main(arguments, services.settings))))
