"""Liveness and readiness.

Readiness names each component's state and nothing more: the reason a check
failed (hosts, addresses, driver messages) goes to the log, not to whoever
asked.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from producers.ingress.state import Services, services_dependency

router = APIRouter()
log = logging.getLogger(__name__)


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
    report = {}
    for name, result in zip(checks, results, strict=True):
        report[name] = "error" if isinstance(result, BaseException) else "ok"
        if isinstance(result, BaseException):
            log.warning("readiness check %s failed: %s: %s", name, type(result).__name__, result)
    ok = all(v == "ok" for v in report.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": report}, 200 if ok else 503
    )
