"""One contract for every vector store: pgvector (real Postgres) and Pinecone (fake, real SDK)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from infra.db.engine import Database
from infra.embeddings.hashing import HashingEmbedder
from infra.errors import PermanentError, TransientError
from infra.vectors.base import Chunk, Query, VectorStore
from infra.vectors.pgvector import PgVectorStore
from infra.vectors.pinecone import PineconeStore
from tests.fakes.pinecone import FakePinecone

EMBEDDER = HashingEmbedder(dim=384)
MODEL = EMBEDDER.model


@pytest.fixture(params=["pgvector", "pinecone"])
async def store(
    request: pytest.FixtureRequest, db: Database, fake_pinecone: FakePinecone
) -> AsyncIterator[VectorStore]:
    built: VectorStore
    if request.param == "pgvector":
        built = PgVectorStore(db, dim=384, ef_search=40)
    else:
        built = PineconeStore(host=fake_pinecone.url, api_key="pc-fake")
    yield built
    await built.close()


async def remember(
    store: VectorStore,
    tenant: uuid.UUID,
    user: str,
    *texts: str,
    metadata: dict[str, str] | None = None,
    model: str = MODEL,
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in texts]
    vectors = await EMBEDDER.embed(texts)
    await store.upsert(
        [
            Chunk(mid, tenant, user, 0, text, model, vector, metadata or {})
            for mid, text, vector in zip(ids, texts, vectors, strict=True)
        ]
    )
    return ids


async def search(
    store: VectorStore,
    tenant: uuid.UUID,
    user: str,
    query: str,
    top_k: int = 5,
    filter: dict[str, str] | None = None,
) -> list[str]:
    [vector] = await EMBEDDER.embed([query])
    hits = await store.search(Query(tenant, user, vector, MODEL, top_k, filter or {}))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    return [h.text for h in hits]


async def test_nearest_first_with_text_and_metadata(store: VectorStore) -> None:
    tenant = uuid.uuid4()
    await remember(store, tenant, "u1", "my dog is called Rex", "I live in Lisbon",
                   "I prefer tea over coffee", metadata={"kind": "fact"})  # fmt: skip
    [vector] = await EMBEDDER.embed(["what is my dog called"])
    hits = await store.search(Query(tenant, "u1", vector, MODEL, top_k=2))
    assert hits[0].text == "my dog is called Rex"
    assert len(hits) == 2
    assert hits[0].metadata == {"kind": "fact"} and hits[0].chunk == 0
    assert 0 < hits[0].score <= 1.0001


async def test_search_never_crosses_users_or_tenants_whatever_the_filter(
    store: VectorStore,
) -> None:
    tenant, other_tenant = uuid.uuid4(), uuid.uuid4()
    await remember(store, tenant, "alice", "alice secret plan", metadata={"user_id": "bob"})
    await remember(store, tenant, "bob", "bob secret plan")
    await remember(store, other_tenant, "alice", "other tenant alice secret plan")

    assert await search(store, tenant, "alice", "secret plan") == ["alice secret plan"]
    assert await search(store, tenant, "bob", "secret plan") == ["bob secret plan"]
    # A filter naming another user narrows the caller's own memories, nothing more.
    assert await search(store, tenant, "bob", "secret plan", filter={"user_id": "alice"}) == []
    assert await search(store, other_tenant, "bob", "secret plan") == []


async def test_metadata_filter_narrows(store: VectorStore) -> None:
    tenant = uuid.uuid4()
    await remember(store, tenant, "u", "likes jazz music", metadata={"topic": "music"})
    await remember(store, tenant, "u", "likes jazz bars", metadata={"topic": "places"})
    assert await search(store, tenant, "u", "jazz", filter={"topic": "places"}) == [
        "likes jazz bars"
    ]


async def test_upsert_overwrites_by_chunk_id_and_delete_is_per_user(store: VectorStore) -> None:
    tenant = uuid.uuid4()
    [mid] = await remember(store, tenant, "u", "first version")
    [vector] = await EMBEDDER.embed(["second version"])
    await store.upsert([Chunk(mid, tenant, "u", 0, "second version", MODEL, vector)])
    assert await search(store, tenant, "u", "version") == ["second version"]
    assert await store.memory_ids(tenant, "u") == {mid}

    await store.delete(tenant, "someone-else", [mid])
    assert await store.memory_ids(tenant, "u") == {mid}
    await store.delete(tenant, "u", [mid, uuid.uuid4()])
    assert await store.memory_ids(tenant, "u") == set()
    assert await search(store, tenant, "u", "version") == []


async def test_vectors_of_another_model_are_not_searched(store: VectorStore) -> None:
    tenant = uuid.uuid4()
    await remember(store, tenant, "u", "old model memory", model="old-model")
    await remember(store, tenant, "u", "current model memory")
    assert await search(store, tenant, "u", "model memory") == ["current model memory"]


async def test_pinecone_errors_are_translated(fake_pinecone: FakePinecone) -> None:
    store = PineconeStore(host=fake_pinecone.url, api_key="pc-fake")
    try:
        [vector] = await EMBEDDER.embed(["x"])
        fake_pinecone.fail_next(503, times=10)  # more than the SDK's own retries
        with pytest.raises(TransientError):
            await store.search(Query(uuid.uuid4(), "u", vector, MODEL, top_k=1))
        fake_pinecone.clear_failures()
        with pytest.raises(PermanentError):
            await store.upsert([Chunk(uuid.uuid4(), uuid.uuid4(), "u", 0, "x", MODEL, [1.0])])
    finally:
        fake_pinecone.clear_failures()
        await store.close()


async def test_pgvector_hnsw_search_on_many_vectors_of_one_user(db: Database) -> None:
    """The index path (not the exact fall-back) returns full, correct results."""
    store = PgVectorStore(db, dim=384, ef_search=40, graph_after=100)
    tenant = uuid.uuid4()
    tag = tenant.hex[:8]  # other runs' rows in the same index must not look the same
    texts = [f"{tag} note number {i} about topic {i % 7}" for i in range(300)]
    await remember(store, tenant, "u", *texts)
    found = await search(store, tenant, "u", texts[123], top_k=10)
    assert len(found) == 10 and found[0] == texts[123]
    assert await _in_graph(db, tenant, "u") == {True: 300}


async def _in_graph(db: Database, tenant: uuid.UUID, user: str) -> dict[bool, int]:
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT in_graph, count(*) FROM memory_chunks "
                "WHERE tenant_id = :t AND user_id = :u GROUP BY in_graph"
            ),
            {"t": tenant, "u": user},
        )
        return {bool(r[0]): int(r[1]) for r in rows}


async def test_a_small_users_chunks_wait_outside_the_graph_and_join_it_together(
    db: Database,
) -> None:
    """Under `graph_after` chunks a user is searched exactly, with no graph insert; past it,
    all their chunks move into the graph, and the answers stay the same."""
    store = PgVectorStore(db, dim=384, ef_search=40, graph_after=20)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    tag = tenant.hex[:8]
    first = [f"{tag} small fact {i} about subject {i % 3}" for i in range(15)]
    await remember(store, tenant, "u", *first)
    await remember(store, other, "u", *(f"{tag} big fact {i}" for i in range(30)))
    assert await _in_graph(db, tenant, "u") == {False: 15}
    assert await _in_graph(db, other, "u") == {True: 30}
    before = await search(store, tenant, "u", first[7], top_k=3)
    assert before[0] == first[7]

    more = [f"{tag} later fact {i}" for i in range(10)]
    await remember(store, tenant, "u", *more)
    assert await _in_graph(db, tenant, "u") == {True: 25}
    assert await search(store, tenant, "u", first[7], top_k=3) == before
    await remember(store, tenant, "u", f"{tag} newest fact waits")
    assert await _in_graph(db, tenant, "u") == {True: 25, False: 1}
    # Found from both sides at once: the waiting chunk and the graph's.
    found = await search(store, tenant, "u", f"{tag} newest fact waits later fact 3", top_k=2)
    assert set(found) == {f"{tag} newest fact waits", f"{tag} later fact 3"}


async def test_a_long_list_of_chunks_reaches_pinecone_in_requests_under_its_cap(
    fake_pinecone: FakePinecone,
) -> None:
    store = PineconeStore(host=fake_pinecone.url, api_key="pc-fake")
    tenant, vectors = uuid.uuid4(), await EMBEDDER.embed([f"note {i}" for i in range(250)])
    chunks = [Chunk(uuid.uuid4(), tenant, "u", 0, f"note {i}", MODEL, v)
              for i, v in enumerate(vectors)]  # fmt: skip
    before = len(fake_pinecone.requests)
    try:
        await store.upsert(chunks)
        assert len(await store.memory_ids(tenant, "u")) == 250
    finally:
        await store.close()
    upserts = [r for r in fake_pinecone.requests[before:] if r[1] == "/vectors/upsert"]
    assert len(upserts) == 3  # 100, 100, 50
