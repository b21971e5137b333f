"""JSON request bodies, whatever Content-Type the client sent.

`curl -d '{...}'` labels JSON as a form; refusing it would only annoy people.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 8 * 1024 * 1024


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    async def parse(request: Request) -> M:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"body over {MAX_BODY_BYTES} bytes", "type": "too_long"}]
            )
        try:
            return model.model_validate_json(raw or b"null")
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from exc

    return parse
