"""A local HTTP server speaking Pinecone's data-plane API (the vector endpoints).

Enough for the real SDK to upsert, query with metadata filters, fetch, list
and delete in namespaces: exact cosine search over what it holds, in memory.
`fail_next(status, n)` makes the next n requests answer with that status.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes.server import BackgroundServer

Record = dict[str, Any]


def matches(metadata: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    """Pinecone's metadata filter language: $and, $or, $eq, $ne, $in, $nin, bare values."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(matches(metadata, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(metadata, sub) for sub in cond):
                return False
        else:
            value = metadata.get(key)
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, operand in ops.items():
                ok = {
                    "$eq": lambda v, o: v == o,
                    "$ne": lambda v, o: v != o,
                    "$in": lambda v, o: v in o,
                    "$nin": lambda v, o: v not in o,
                }[op](value, operand)
                if not ok:
                    return False
    return True


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class FakePinecone(BackgroundServer):
    name = "fake Pinecone"

    def __init__(self, dimension: int = 384) -> None:
        super().__init__()
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, Record]] = {}
        self.requests: list[tuple[str, str]] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/vectors/upsert", self._upsert)
        app.router.add_post("/query", self._query)
        app.router.add_post("/vectors/delete", self._delete)
        app.router.add_get("/vectors/fetch", self._fetch)
        app.router.add_get("/vectors/list", self._list)
        return app

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.requests.append((request.method, request.path))
            status = self._failures.pop(0) if self._failures else None
        if request.headers.get("Api-Key") is None:
            return _error(401, "UNAUTHENTICATED", "missing Api-Key")
        if status is not None:
            return _error(status, "UNAVAILABLE", "injected failure")
        return await handler(request)

    def _space(self, namespace: str | None) -> dict[str, Record]:
        return self.namespaces.setdefault(namespace or "", {})

    async def _upsert(self, request: web.Request) -> web.Response:
        body = await request.json()
        vectors = body.get("vectors", [])
        for v in vectors:
            if len(v.get("values", [])) != self.dimension:
                return _error(
                    400,
                    "INVALID_ARGUMENT",
                    f"Vector dimension {len(v['values'])} "
                    f"does not match the dimension of the index {self.dimension}",
                )
        with self._lock:
            space = self._space(body.get("namespace"))
            for v in vectors:
                space[v["id"]] = {
                    "id": v["id"],
                    "values": v["values"],
                    "metadata": v.get("metadata") or {},
                }
        return web.json_response({"upsertedCount": len(vectors)})

    async def _query(self, request: web.Request) -> web.Response:
        body = await request.json()
        namespace = body.get("namespace", "")
        with self._lock:
            records = list(self._space(namespace).values())
        query = body["vector"]
        scored = sorted(
            (
                (cosine(query, r["values"]), r)
                for r in records
                if matches(r["metadata"], body.get("filter"))
            ),
            key=lambda pair: pair[0],
            reverse=True,
        )[: body["topK"]]
        out = []
        for score, r in scored:
            match: Record = {"id": r["id"], "score": score}
            if body.get("includeMetadata"):
                match["metadata"] = r["metadata"]
            if body.get("includeValues"):
                match["values"] = r["values"]
            out.append(match)
        return web.json_response(
            {"matches": out, "namespace": namespace, "usage": {"readUnits": 5}}
        )

    async def _delete(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            space = self._space(body.get("namespace"))
            if body.get("deleteAll"):
                space.clear()
            for vid in body.get("ids") or []:
                space.pop(vid, None)
            if body.get("filter"):
                for vid in [k for k, r in space.items() if matches(r["metadata"], body["filter"])]:
                    del space[vid]
        return web.json_response({})

    async def _fetch(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace", "")
        ids = request.query.getall("ids", [])
        with self._lock:
            space = self._space(namespace)
            found = {vid: space[vid] for vid in ids if vid in space}
        return web.json_response(
            {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}
        )

    async def _list(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace", "")
        prefix = request.query.get("prefix", "")
        limit = int(request.query.get("limit", "100"))
        start = int(request.query.get("paginationToken", "0"))
        with self._lock:
            ids = sorted(k for k in self._space(namespace) if k.startswith(prefix))
        page = ids[start : start + limit]
        more = start + limit < len(ids)
        return web.json_response(
            {
                "vectors": [{"id": vid} for vid in page],
                "pagination": {"next": str(start + limit)} if more else None,
                "namespace": namespace,
                "usage": {"readUnits": 1},
            }
        )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"code": status, "error": {"code": code, "message": message}}, status=status
    )
