"""The machine-readable contracts, served: AsyncAPI (events) and Prometheus metrics.

FastAPI serves the OpenAPI document itself at /openapi.json.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from schemas.asyncapi import asyncapi_document

router = APIRouter(include_in_schema=False)


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    return asyncapi_document(request.app.version)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    from infra.telemetry.metrics import CONTENT_TYPE

    registry = request.app.state.metrics
    if registry is None:
        return Response("metrics are off\n", 404, media_type="text/plain")
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
