"""The base of every model a caller sends: no text in it holds a NUL character.

Postgres stores neither a NUL in `text` nor a `\\u0000` in `jsonb`, and what
a caller sends ends up in one or the other (a job's request, a memory, a
rule's template, a connection's name). Refused here, the error names the
field; left in, the write fails later with a server error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator
from pydantic_core import PydanticCustomError

NUL = "\x00"


def nul_at(value: Any) -> str | None:
    """Where in `value` (strings, and the keys and items of dicts and lists) a NUL is:
    "" for the value itself, ".key" or "[0]" below it; None when there is none.
    Nested models are not entered: they check their own fields."""
    if isinstance(value, str):
        return "" if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return f".{key!r}"
            below = nul_at(item)
            if below is not None:
                return f".{key}{below}"
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            below = nul_at(item)
            if below is not None:
                return f"[{index}]{below}"
    return None


class RequestModel(BaseModel):
    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        where = nul_at(value)
        if where is not None:
            raise PydanticCustomError(
                "string_nul",
                "a NUL character (\\u0000) is not allowed{where}",
                {"where": f" (at {where.lstrip('.')})" if where else ""},
            )
        return value
