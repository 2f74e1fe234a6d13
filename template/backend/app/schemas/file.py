from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.models import FileStatus


class FileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    original_name: str
    content_type: str
    size: int
    checksum_sha256: str
    status: FileStatus
    created_at: datetime
    processed_at: datetime | None


class FilePage(BaseModel):
    items: list[FileOut]
    total: int
    limit: int
    offset: int
