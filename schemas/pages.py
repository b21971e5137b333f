"""A page of a list in OpenAI's shape, cursored by id: `after` the last id of the page before."""

from __future__ import annotations

import uuid
from typing import Generic, Literal, Self, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item", bound=BaseModel)


class IdPage(BaseModel, Generic[Item]):
    object: Literal["list"] = "list"
    data: list[Item]
    first_id: uuid.UUID | None
    last_id: uuid.UUID | None
    has_more: bool

    @classmethod
    def page(cls, rows: list[Item], limit: int) -> Self:
        """The first `limit` of `rows`, which holds one more when there is a next page."""
        data = rows[:limit]
        return cls(
            data=data,
            first_id=getattr(data[0], "id", None) if data else None,
            last_id=getattr(data[-1], "id", None) if data else None,
            has_more=len(rows) > limit,
        )
