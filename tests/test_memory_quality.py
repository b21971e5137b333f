"""The memory quality bench's data set asks in other words, and its scoring runs the real store."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import text

from bench.memory_quality import DATA, load, mean_overlap, overlap, score
from infra.db.engine import Database
from infra.embeddings.hashing import HashingEmbedder
from infra.embeddings.minilm import MiniLMEmbedder

# The bench's docstring promises it: a question shares few content words with its fact.
MAX_MEAN_OVERLAP = 0.15


def test_the_data_set_is_as_big_as_promised_and_every_question_names_a_fact_of_its_user() -> None:
    data = load(DATA)
    facts = [f for u in data["users"] for f in u["facts"]]
    assert len(data["users"]) >= 30 and len(facts) >= 300 and len(data["questions"]) >= 300
    ids = [f["id"] for f in facts] + [q["id"] for q in data["questions"]]
    assert len(ids) == len(set(ids))
    owner = {f["id"]: u["id"] for u in data["users"] for f in u["facts"]}
    for question in data["questions"]:
        assert owner[question["fact"]] == question["user"], question
    # Every user has distractors: facts no question asks about, besides the asked ones.
    asked = Counter(owner[q["fact"]] for q in data["questions"])
    assert all(len(u["facts"]) > asked[u["id"]] for u in data["users"])
    assert len({f["text"] for f in facts}) == len(facts)


def test_questions_share_few_words_with_their_facts() -> None:
    data = load(DATA)
    assert mean_overlap(data) <= MAX_MEAN_OVERLAP
    assert overlap("what's the name of my puppy?", "My dog is called Biscuit") == 0
    assert overlap("what is my dog called?", "My dog is called Biscuit") == 1


async def test_the_default_embedder_finds_paraphrases_through_the_store(db: Database) -> None:
    data = load(DATA)
    users = data["users"][:3]
    subset = {
        "users": users,
        "questions": [q for q in data["questions"] if q["user"] in {u["id"] for u in users}],
    }
    tenant = uuid.uuid4()
    try:
        default = await score(db, MiniLMEmbedder(), subset, tenant)
        hashing = await score(db, HashingEmbedder(384), subset, tenant)
    finally:
        async with db.transaction() as session:
            await session.execute(
                text("DELETE FROM memory_chunks WHERE tenant_id = :t"), {"t": tenant}
            )
    assert default["hit_at_5"] >= 0.9
    assert default["hit_at_1"] > hashing["hit_at_1"]
