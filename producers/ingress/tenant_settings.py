"""The tenant's own settings: its browser origins (CORS) and whether it uses the response
and semantic caches.

They live in `tenants.settings`; a PUT merges the fields it names and keeps the others.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from infra.db.tenants import tenant_settings, update_tenant_settings
from producers.ingress.admission import RateLimitedCaller
from producers.ingress.body import json_body
from producers.ingress.cors import AllowedOrigins
from producers.ingress.state import Svc
from schemas.tenant_settings import TenantSettingsIn, TenantSettingsView

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])

Body = Annotated[TenantSettingsIn, Depends(json_body(TenantSettingsIn))]


@router.get("/settings", response_model=TenantSettingsView)
async def get_settings(caller: RateLimitedCaller, svc: Svc) -> TenantSettingsView:
    return _view(await tenant_settings(svc.db, caller.tenant_id))


@router.put("/settings", response_model=TenantSettingsView)
async def put_settings(
    body: Body, caller: RateLimitedCaller, svc: Svc, request: Request
) -> TenantSettingsView:
    # tenant:write is the tenant's administration (producers.ingress.access).
    changes = body.model_dump(exclude_none=True)
    settings = await update_tenant_settings(svc.db, caller.tenant_id, changes)
    if "cors_origins" in changes:
        origins: AllowedOrigins = request.app.state.cors
        origins.changed(caller.tenant_id, changes["cors_origins"])
    return _view(settings)


def _view(settings: dict[str, Any]) -> TenantSettingsView:
    origins = settings.get("cors_origins")
    return TenantSettingsView(
        cors_origins=[str(o) for o in origins] if isinstance(origins, list) else [],
        response_cache=bool(settings.get("response_cache", False)),
        semantic_cache=bool(settings.get("semantic_cache", False)),
    )
