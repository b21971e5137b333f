"""The sign-in token issuers a tenant trusts: POST/GET/DELETE /v1/auth/issuers (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from infra.connectors.address_policy import AddressPolicy
from infra.db import issuers as store
from infra.db.issuers import AuthIssuer
from infra.db.sealed import seal_into
from producers.ingress.actions import SecretBox, invalid
from producers.ingress.auth import Authenticated
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError
from producers.ingress.outbound_urls import check_url
from producers.ingress.sign_in import SignIn
from producers.ingress.state import Svc
from schemas.ids import uuid7
from schemas.issuers import IssuerCreate, IssuerList, IssuerView

router = APIRouter(tags=["sign-in"])


def view(issuer: AuthIssuer) -> IssuerView:
    shown = issuer.model_dump(exclude={"secret_key_id", "secret_sealed"})
    return IssuerView.model_validate({**shown, "kind": "jwks" if issuer.jwks_url else "hs256"})


async def check_jwks_url(url: str, policy: AddressPolicy) -> None:
    """Refuses a JWKS URL the outbound address policy would not let us fetch (422)."""
    await check_url(url, policy, "jwks_url")


@router.post("/v1/auth/issuers", status_code=201, response_model=IssuerView)
async def create_issuer(
    body: Annotated[IssuerCreate, Depends(json_body(IssuerCreate))],
    caller: Authenticated,
    svc: Svc,
    box: SecretBox,
    request: Request,
) -> IssuerView:
    if (body.jwks_url is None) == (body.hs256_secret is None):
        field = "hs256_secret" if body.jwks_url is not None else "jwks_url"
        raise invalid(field, "give exactly one of jwks_url and hs256_secret")
    if body.jwks_url is not None:
        sign_in: SignIn = request.app.state.sign_in
        await check_jwks_url(body.jwks_url, sign_in.policy)
    issuer = AuthIssuer(
        id=uuid7(),
        tenant_id=caller.tenant_id,
        issuer=body.issuer,
        audience=body.audience,
        jwks_url=body.jwks_url,
        user_claim=body.user_claim,
        role_claim=body.role_claim,
    )
    if body.hs256_secret is not None:
        seal_into(box, issuer, body.hs256_secret.encode())
    try:
        await store.add_issuer(svc.db, issuer)
    except store.IssuerExists as exc:
        raise ApiError(
            409,
            "conflict",
            "this issuer is already registered for this audience",
            field="audience",
        ) from exc
    return view(issuer)


@router.get("/v1/auth/issuers", response_model=IssuerList)
async def list_issuers(caller: Authenticated, svc: Svc) -> IssuerList:
    return IssuerList(data=[view(i) for i in await store.list_issuers(svc.db, caller.tenant_id)])


@router.get("/v1/auth/issuers/{issuer_id}", response_model=IssuerView)
async def get_issuer(issuer_id: uuid.UUID, caller: Authenticated, svc: Svc) -> IssuerView:
    issuer = await store.get_issuer(svc.db, caller.tenant_id, issuer_id)
    if issuer is None:
        raise ApiError(404, "not_found", "no such issuer")
    return view(issuer)


@router.delete("/v1/auth/issuers/{issuer_id}", status_code=204)
async def delete_issuer(
    issuer_id: uuid.UUID, caller: Authenticated, svc: Svc, request: Request
) -> Response:
    issuer = await store.get_issuer(svc.db, caller.tenant_id, issuer_id)
    if issuer is None or not await store.delete_issuer(svc.db, caller.tenant_id, issuer_id):
        raise ApiError(404, "not_found", "no such issuer")
    sign_in: SignIn = request.app.state.sign_in
    sign_in.forget(issuer.issuer)
    return Response(status_code=204)
