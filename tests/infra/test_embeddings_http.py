"""Embeddings over the chat path's raw HTTP client: the same answers, the same error kinds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from infra.embeddings.openai import OpenAIEmbedder
from infra.errors import PermanentError, TransientError
from tests.fakes.llm import FakeLLMServer, _fake_vector
from tests.fakes.openai_embeddings import FakeEmbeddingsServer
from tests.harness import unique


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def test_embeddings_do_not_load_the_openai_sdk() -> None:
    code = "import sys, infra.embeddings.openai; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_embeddings_answer_the_vendors_vectors_in_input_order(fake: FakeLLMServer) -> None:
    embedder = OpenAIEmbedder("text-embedding-fake", 8, base_url=fake.openai_base_url,
                              api_key="sk-emb")  # fmt: skip
    texts = [unique("first "), "second text here"]
    try:
        vectors, used = await embedder.embed_counted(texts, 8)
    finally:
        await embedder.close()
    assert vectors == [_fake_vector(t, 8) for t in texts] and used == 5
    [call] = fake.calls_for(texts[0])
    assert call.model == "text-embedding-fake" and call.headers["Authorization"] == "Bearer sk-emb"


async def test_embeddings_send_floats_and_dimensions_only_when_asked() -> None:
    with FakeEmbeddingsServer() as server:
        embedder = OpenAIEmbedder("text-embedding-3-small", 16, base_url=server.base_url)
        try:
            await embedder.embed_counted(["a", "b"], 16)
            await embedder.embed_counted(["c"])
        finally:
            await embedder.close()
    assert server.requests == [
        {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float",
         "dimensions": 16},
        {"model": "text-embedding-3-small", "input": ["c"], "encoding_format": "float"},
    ]  # fmt: skip


async def test_embeddings_429_is_transient_with_its_retry_after(fake: FakeLLMServer) -> None:
    embedder = OpenAIEmbedder("emb@status=429@retry_after=7@fail=1", 8,
                              base_url=fake.openai_base_url)  # fmt: skip
    try:
        with pytest.raises(TransientError) as limited:
            await embedder.embed_counted([unique("limited ")])
    finally:
        await embedder.close()
    assert limited.value.status == 429 and limited.value.retry_after == 7


KINDS = [(500, TransientError), (503, TransientError), (400, PermanentError), (401, PermanentError)]


@pytest.mark.parametrize(("status", "kind"), KINDS)
async def test_embeddings_errors_map_by_status(
    fake: FakeLLMServer, status: int, kind: type[Exception]
) -> None:
    embedder = OpenAIEmbedder(f"emb@always={status}", 8, base_url=fake.openai_base_url)
    try:
        with pytest.raises(kind, match=f"openai answered {status}: fake failure {status}") as e:
            await embedder.embed_counted([unique("x ")])
    finally:
        await embedder.close()
    assert getattr(e.value, "status", None) == status


async def test_embeddings_unreachable_server_is_transient() -> None:
    embedder = OpenAIEmbedder("m", 8, base_url="http://127.0.0.1:9/v1", timeout_s=5)
    try:
        with pytest.raises(TransientError) as failed:
            await embedder.embed_counted(["x"])
    finally:
        await embedder.close()
    assert failed.value.status == 502
