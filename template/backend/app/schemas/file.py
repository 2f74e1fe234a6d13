from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from app.models import FileStatus
from app.schemas.common import Page, UtcDatetime


class FileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organization_id: uuid.UUID
    # Who uploaded it; null once that account is deleted.
    owner_id: uuid.UUID | None
    original_name: str
    content_type: str
    size: int
    checksum_sha256: str
    status: FileStatus
    created_at: UtcDatetime
    processed_at: UtcDatetime | None


class FilePage(Page):
    items: list[FileOut]
