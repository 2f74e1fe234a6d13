"""Field types and shapes shared by the response schemas."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel

from app.core.clock import as_utc

# Every stored time is UTC, but SQLite returns it without a zone: made aware here, every
# answer writes times alike, with a trailing Z, whatever the database.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


@dataclass(frozen=True)
class Paging:
    """Which slice of a list a request asks for (the `limit` and `offset` parameters)."""

    limit: int
    offset: int


class Page(BaseModel):
    """A slice of a list, with the size of the whole. Each list's page subclasses it and
    names the type of its items (`class FilePage(Page): items: list[FileOut]`), so that
    its schema has a name and a shape of its own."""

    items: Sequence[BaseModel]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, rows: Iterable[Any], total: int, paging: Paging) -> Self:
        """The page of `rows` (models read from the database) out of `total`."""
        page = {"items": list(rows), "total": total, "limit": paging.limit, "offset": paging.offset}
        return cls.model_validate(page, from_attributes=True)
