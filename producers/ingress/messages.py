"""Anthropic's API in: POST /v1/messages and POST /v1/messages/count_tokens.

The official `anthropic` SDK (and whatever speaks Anthropic's API) works with
its base URL set to Ayush and an Ayush key as its API key (`x-api-key`, or a
bearer token). A request becomes a ChatJob (schemas.anthropic_messages) and
takes the same gateway path as `/v1/chat/completions`
(producers.ingress.model_call): any model may answer it, a Claude deployment
with what the port carries of the request (cache breakpoints and `top_k`
included), any other through the translation. Answers and errors are in
Anthropic's shapes. The `anthropic-version` and `anthropic-beta` headers are
accepted and not acted on.

`count_tokens` estimates with the tokenizer admission counts by
(infra.providers.tokens): it never calls a vendor, so it costs nothing and
answers the same for every model; Claude's own tokenizer counts some percent
differently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from infra.errors import PermanentError
from infra.providers.tokens import estimate_job
from producers.ingress import openai_errors as oe
from producers.ingress.admission import rate_limited
from producers.ingress.anthropic_errors import anthropic_body, anthropic_shaped, invalid
from producers.ingress.auth import authenticate_x_api_key
from producers.ingress.messages_stream import MessageShape
from producers.ingress.model_call import run, semantic, wants_cache
from producers.ingress.plain_route import add_plain_routes
from producers.ingress.scope import scoped_job
from producers.ingress.state import services
from schemas.anthropic_messages import CountTokensRequest, MessagesRequest, messages_job
from schemas.jobs import ChatJob

router = APIRouter(prefix="/v1", tags=["anthropic"])
Endpoint = Callable[[Request], Awaitable[Response]]


@anthropic_shaped
async def messages(request: Request) -> Response:
    svc = services(request)
    caller = await authenticate_x_api_key(request, svc)
    body = await anthropic_body(request, MessagesRequest)
    job = _job(lambda: messages_job(body, wants_cache(request, caller)))
    job = semantic(request, caller, scoped_job(caller, job, "metadata.user_id"))
    # What a stream's `message_start` tells of the input; its end tells the vendor's count.
    shape = MessageShape(body.model, estimate_job(job) if body.stream else 0)
    return await run(request, svc, caller, job, shape, stream=body.stream)


@anthropic_shaped
async def count_tokens(request: Request) -> Response:
    svc = services(request)
    await authenticate_x_api_key(request, svc)
    await rate_limited(request)  # counts against the key's requests per minute
    body = await anthropic_body(request, CountTokensRequest)
    try:
        svc.catalog.check(body.model)
    except PermanentError as exc:  # unknown or unpriced: a request may not name it
        raise oe.model_refused(exc) from exc
    job = _job(lambda: messages_job(body))
    return Response(
        orjson.dumps({"input_tokens": estimate_job(job)}), media_type="application/json"
    )


def _job(make: Callable[[], ChatJob]) -> ChatJob:
    try:
        return make()
    except ValidationError as exc:
        raise invalid(exc) from exc


# Plain routes, as /v1/chat/completions: each authenticates and admits its request itself.
PLAIN_ROUTES: dict[str, tuple[Endpoint, type[BaseModel]]] = {
    "/messages": (messages, MessagesRequest),
    "/messages/count_tokens": (count_tokens, CountTokensRequest),
}
add_plain_routes(router, PLAIN_ROUTES)
