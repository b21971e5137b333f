"""The machine-readable contracts, served: AsyncAPI (events).

FastAPI serves the OpenAPI document itself at /openapi.json. Prometheus
metrics are not served here but on `AYUSH_METRICS_PORT` (see app.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from schemas.asyncapi import asyncapi_document

router = APIRouter(include_in_schema=False)


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    return asyncapi_document(request.app.version)
