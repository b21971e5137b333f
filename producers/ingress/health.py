"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from producers.ingress.state import Services, services_dependency

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: Services = Depends(services_dependency)) -> JSONResponse:
    checks = {
        "kafka": svc.publisher.ping(),
        "postgres": svc.db.ping(),
        "redis": svc.streams.ping(),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(c, timeout=3) for c in checks.values()), return_exceptions=True
    )
    report = {
        name: "ok" if not isinstance(r, BaseException) else f"error: {type(r).__name__}: {r}"
        for name, r in zip(checks, results, strict=True)
    }
    ok = all(v == "ok" for v in report.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": report}, 200 if ok else 503
    )
