"""An organization's files. Uploads: POST a multipart form with a `file` field; the file
streams into storage, and the process_file job checks it and marks it ready. Every
member of the organization sees its files; who may delete which is decided in
services/file_service.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import Response, StreamingResponse

from app.api.deps import (
    JobsDep,
    OrgMember,
    PagingDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    VerifiedOrgMember,
)
from app.core.errors import raises
from app.models import File
from app.schemas.file import FileOut, FilePage
from app.services import file_service
from app.services.upload_service import FILE_FIELD

router = APIRouter(prefix="/organizations/{org_id}/files", tags=["files"])

# The route reads the body itself, to stream it; this tells /docs what to send.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FileOut,
    openapi_extra=UPLOAD_BODY,
)
@raises(file_service.upload)
async def upload_file(
    request: Request,
    # Uploading takes a verified email address (for an API key, its creator's).
    member: VerifiedOrgMember,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    jobs: JobsDep,
) -> File:
    return await file_service.upload(
        session,
        jobs,
        storage,
        settings,
        member,
        request.stream(),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
    )


@router.get("", response_model=FilePage)
async def list_files(member: OrgMember, session: SessionDep, paging: PagingDep) -> FilePage:
    """The organization's files, newest first."""
    files, total = await file_service.list_in(
        session, member.organization, paging.limit, paging.offset
    )
    return FilePage.of(files, total, paging)


@raises(file_service.visible_file)
async def get_visible_file(file_id: uuid.UUID, member: OrgMember, session: SessionDep) -> File:
    return await file_service.visible_file(session, member, file_id)


VisibleFile = Annotated[File, Depends(get_visible_file)]


@router.get("/{file_id}", response_model=FileOut)
async def read_file(file: VisibleFile) -> File:
    return file


def content_disposition(filename: str) -> str:
    """`attachment`, with the name in ASCII for old clients and in UTF-8 (RFC 6266)."""
    fallback = filename.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


# Sent with every download, whichever storage holds the file. The type was decided from
# the bytes at upload, so the browser must not guess another (nosniff); should it show
# the file anyway, the policy gives it no script, no requests and a unique origin.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    # Someone's private file: no cache on the way or on disk keeps a copy.
    "Cache-Control": "no-store",
}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes as an attachment, of the type told from them at "
        "upload, streamed from storage",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment"},
            **{
                name: {"schema": {"type": "string", "enum": [value]}}
                for name, value in DOWNLOAD_HEADERS.items()
            },
        },
    },
}


@router.get("/{file_id}/download", response_class=Response, responses=DOWNLOAD_RESPONSES)
@raises(file_service.content)
async def download_file(
    file: VisibleFile, session: SessionDep, storage: StorageDep
) -> StreamingResponse:
    """The file streamed out of storage. Both backends answer alike: S3 is read through
    the API rather than by a presigned URL, because S3 cannot be made to send
    X-Content-Type-Options."""
    return StreamingResponse(
        await file_service.content(session, storage, file),
        media_type=file.content_type,
        headers={
            "Content-Disposition": content_disposition(file.original_name),
            "Content-Length": str(file.size),
            **DOWNLOAD_HEADERS,
        },
    )


@router.delete("/{file_id}", status_code=status.HTTP_204_NO_CONTENT)
@raises(file_service.delete)
async def delete_file(
    file: VisibleFile, member: OrgMember, session: SessionDep, storage: StorageDep
) -> None:
    await file_service.delete(session, storage, member, file)
