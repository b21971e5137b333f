"""A local HTTP server speaking OpenAI's embeddings API (POST /v1/embeddings).

Vectors come from the hashing embedder, so similar texts get similar vectors.
The model name chooses failures: `emb@status=429` or `emb@status=400` always
answer with that status.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from aiohttp import web

from infra.embeddings.hashing import HashingEmbedder
from tests.fakes.server import BackgroundServer


class FakeEmbeddingsServer(BackgroundServer):
    name = "fake embeddings server"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        model = str(body["model"])
        if "@status=" in model:
            status = int(model.split("@status=")[1])
            return web.json_response(
                {"error": {"message": "injected", "type": "fake", "code": None}}, status=status
            )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await HashingEmbedder(dim=int(body.get("dimensions") or 1536)).embed(texts)
        data = []
        for i, vector in enumerate(vectors):
            embedding: Any = vector
            if body.get("encoding_format") == "base64":  # what the SDK asks for by default
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return web.json_response(
            {
                "object": "list",
                "data": list(reversed(data)),  # order by index, not by position
                "model": model,
                "usage": {"prompt_tokens": sum(len(t.split()) for t in texts), "total_tokens": 0},
            }
        )
