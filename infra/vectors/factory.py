"""Choosing the embedder and the vector store from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from infra.db.engine import Database
from infra.embeddings.base import Embedder
from infra.embeddings.hashing import HashingEmbedder
from infra.settings import Settings
from infra.vectors.base import VectorStore


@dataclass(frozen=True)
class MemoryBackend:
    embedder: Embedder
    store: VectorStore

    async def close(self) -> None:
        await self.store.close()
        close = getattr(self.embedder, "close", None)
        if close is not None:
            await close()


def build_embedder(settings: Settings) -> Embedder:
    if settings.memory_embedder == "openai":
        from infra.embeddings.openai import OpenAIEmbedder

        return OpenAIEmbedder(settings.memory_embedding_model, settings.memory_embedding_dim)
    if settings.memory_embedder == "minilm":
        from infra.embeddings.minilm import MiniLMEmbedder

        return MiniLMEmbedder(threads=settings.memory_embedder_threads)
    return HashingEmbedder(dim=settings.memory_embedding_dim)


def build_store(settings: Settings, db: Database, dim: int) -> VectorStore:
    if settings.memory_store == "pinecone":
        if not settings.pinecone_host:
            raise RuntimeError("AYUSH_PINECONE_HOST must be set to use the Pinecone store")
        from infra.vectors.pinecone import PineconeStore

        return PineconeStore(host=settings.pinecone_host, api_key=settings.pinecone_api_key or "")
    from infra.vectors.pgvector import PgVectorStore

    return PgVectorStore(
        db,
        dim=dim,
        ef_search=settings.memory_hnsw_ef_search,
        graph_after=settings.memory_graph_after,
    )


def build_memory(settings: Settings, db: Database) -> MemoryBackend:
    embedder = build_embedder(settings)
    return MemoryBackend(embedder, build_store(settings, db, embedder.dim))
