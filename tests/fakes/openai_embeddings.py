"""A local HTTP server speaking OpenAI's embeddings API (POST /v1/embeddings).

Vectors come from the hashing embedder, so similar texts get similar vectors.
The model name chooses failures: `emb@status=429` or `emb@status=400` always
answer with that status.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
from typing import Any

from aiohttp import web

from infra.embeddings.hashing import HashingEmbedder


class FakeEmbeddingsServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> FakeEmbeddingsServer:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/embeddings", self._embeddings)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-embeddings", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake embeddings server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

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
