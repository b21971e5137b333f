"""Named routes at the ingress: `route_job` turns `model: "auto"` (or any route of the
routing file) into the model its rules choose, before the job is admitted and published;
POST /v1/routing/explain answers the same choice without running anything, and
GET /v1/routing/routes lists the routes and their rules (infra.routing.tiers).

Every door that submits a job goes through `submission.submit`, which calls `route_job`:
the chosen model is the job's `model`, the choice (route, model, tier, rule) its `route`,
kept on the job's row and event, in its usage event's `extra`, and counted on
`ayush_route_choices_total{route,model,rule}`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from infra.errors import AyushError, PermanentError
from infra.providers.base import ChatRequest, Message
from infra.routing.catalog import ModelCatalog
from infra.routing.tiers import CLASSES, Choice, Needs, NoTierFits, Route, choose, needs_of
from producers.ingress.body import json_body
from producers.ingress.errors import ApiError, SubmissionError
from producers.ingress.state import services
from schemas.chat_completions import chat_job
from schemas.jobs import ChatJob, RouteChoice
from schemas.openai import ChatCompletionRequest

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/routing", tags=["routing"])
JSON = "application/json"
CLASSIFY_PROMPT = (
    "Answer with one word, simple or complex: how hard is the following request to answer well?\n\n"
)


class RouteRefused(SubmissionError):
    """400 `no_tier_fits`: a routed request no tier of its route can take."""

    def __init__(self, cause: PermanentError) -> None:
        super().__init__(400, getattr(cause, "code", "no_tier_fits"), str(cause), field="model")
        self.cause = cause


async def route_job(request: Request, job: ChatJob) -> ChatJob:
    """`job` with its model chosen by its route when `job.model` names one (else as it is).

    The one function every door calls (through `submit`); RouteRefused if no tier fits.
    A `route` the body carried is never kept: only the ingress's own choice is.
    """
    svc = services(request)
    route = svc.catalog.routing.routes.get(job.model)
    if route is None:
        return job.model_copy(update={"route": None}) if job.route is not None else job
    choice, _ = await explain(request, route, job)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.route_choices.labels(choice.route, choice.model, choice.rule).inc()
    record = RouteChoice(**choice.record())
    return job.model_copy(update={"model": choice.model, "route": record})


async def explain(request: Request, route: Route, job: ChatJob) -> tuple[Choice, Needs]:
    """The choice `route` makes for `job`, and what it read of `job`; RouteRefused when
    no tier fits."""
    try:
        if job.kind == "embedding":
            raise NoTierFits(route.name, ["a route chooses chat models, not embedding models"])
        needs = needs_of(job)
        if needs.effort is None and route.classifier is not None:
            needs = await _classified(request, route, job, needs)
        return choose(route, needs), needs
    except NoTierFits as exc:
        raise RouteRefused(exc) from exc


async def _classified(request: Request, route: Route, job: ChatJob, needs: Needs) -> Needs:
    """`needs` with the effort the route's classifier reads from the last user message;
    as they were if it fails, does not answer in time or answers neither word (the rules
    decide then)."""
    assert route.classifier is not None
    classify: RouteClassifier | None = getattr(request.app.state, "classify", None)
    text = next((m.content for m in reversed(job.messages) if m.role == "user"), "")
    if classify is None or not text:
        return needs
    try:
        await classify.ready()
        async with asyncio.timeout(route.classifier.timeout_s):
            answer = await classify(route.classifier.model, text)
    except (TimeoutError, AyushError) as exc:
        log.warning("route %s: classifier failed, the rules decide: %s", route.name, exc)
        return needs
    words = set(re.findall(r"\b(simple|complex)\b", answer.lower()))
    if len(words) != 1:
        return needs
    return replace(needs, effort=CLASSES[words.pop()], effort_from="classifier")


class RouteClassifier:
    """Asks a route's classifier model through a gateway of the ingress's own (built only
    when some route names a classifier).

    The gateway brings the vendor SDKs, seconds of imports an ingress without a classifier
    never pays: they load in a thread from start-up on, without holding up readiness; a
    routed request that comes before they are loaded waits for them (outside the
    classifier's timeout)."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self._catalog = catalog
        self._loading = asyncio.ensure_future(asyncio.to_thread(_gateway_type))
        self._gateway: Any = None

    async def ready(self) -> None:
        if self._gateway is None:
            gateway_type = await asyncio.shield(self._loading)
            if self._gateway is None:
                routing = self._catalog.routing
                self._gateway = gateway_type(routing, default_timeout_s=30.0, catalog=self._catalog)

    async def __call__(self, model: str, text: str) -> str:
        await self.ready()
        ask = ChatRequest(
            model=model,
            messages=[Message("system", CLASSIFY_PROMPT), Message("user", text[:4000])],
            max_tokens=5,
            temperature=0,
        )
        completion, _ = await self._gateway.chat(model, ask, _ignore, _ignore)
        return str(completion.text)

    async def close(self) -> None:
        if self._gateway is not None:
            await self._gateway.close()


def _gateway_type() -> type:
    from infra.routing.gateway import Gateway

    return Gateway


def classifier(catalog: ModelCatalog) -> RouteClassifier | None:
    """The ingress's classifier client, or None when no route has a classifier."""
    if any(r.classifier for r in catalog.routing.routes.values()):
        return RouteClassifier(catalog)
    return None


async def _ignore(_: Any) -> None:
    return None


# the dry run ------------------------------------------------------------------------
@router.post(
    "/explain",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
)
async def explain_route(
    body: Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))],
    request: Request,
) -> Response:
    """The model a chat completion request naming a route would run on, the tiers looked
    at and the rule that decided; nothing is run or billed (a route's classifier, if it
    has one, is asked)."""
    svc = services(request)
    try:
        job = chat_job(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    route = svc.catalog.routing.routes.get(body.model)
    if route is None:
        raise ApiError(
            404,
            "route_not_found",
            f"{body.model!r} is not a route: GET /v1/routing/routes lists them",
            field="model",
        )
    choice, needs = await explain(request, route, job)
    return _json(
        {
            "route": choice.route,
            "model": choice.model,
            "tier": choice.tier,
            "rule": choice.rule,
            "needs": dict(needs.__dict__),
            "tiers": [
                {**route.tiers[i].rules(), "passed_over": why}
                for i, (_, why) in enumerate(choice.considered)
            ],
        }
    )


@router.get("/routes")
async def list_routes(request: Request) -> Response:
    """Every named route and its rules: what a request naming it will be sent to, and why."""
    routes = services(request).catalog.routing.routes
    return _json({"object": "list", "data": [routes[n].rules() for n in sorted(routes)]})


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type=JSON)
