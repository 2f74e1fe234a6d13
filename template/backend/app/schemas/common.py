"""Field types shared by the response schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator

from app.core.clock import as_utc

# Every stored time is UTC, but SQLite returns it without a zone: made aware here, every
# answer writes times alike, with a trailing Z, whatever the database.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
