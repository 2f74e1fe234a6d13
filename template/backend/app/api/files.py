"""Uploads: POST a multipart form with a `file` field; the file streams into storage,
and the process_file job checks it and marks it ready.

Whose files one may act on follows the rule for accounts (rbac.manages): owners act on
everyone's, admins on members' and their own, members on their own. To anyone else a
file does not exist (404, not 403, so ids of other people's files reveal nothing).
"""

from __future__ import annotations

import itertools
import logging
import uuid
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import quote

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select

from app.api.deps import (
    MAX_OFFSET,
    CurrentUser,
    JobsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    VerifiedUser,
)
from app.core.rbac import manages
from app.models import File, User
from app.schemas.file import FileOut, FilePage
from app.services.storage_service import ObjectMissingError, Storage, StorageUnavailableError
from app.services.upload_service import (
    FILE_FIELD,
    UploadError,
    check_declared_length,
    multipart_boundary,
    receive_upload,
)
from app.worker.jobs import process_file_job
from app.worker.queue import QueueUnavailableError

router = APIRouter(prefix="/files", tags=["files"])
logger = logging.getLogger(__name__)

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
ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than MAX_UPLOAD_BYTES"},
    415: {"description": "Not multipart, or the file's content is not an accepted type"},
    503: {"description": "Storage or the job queue is unreachable; nothing was stored"},
}


def refuse(error: UploadError) -> HTTPException:
    return HTTPException(status_code=error.status_code, detail=error.message)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FileOut,
    openapi_extra=UPLOAD_BODY,
    responses=ERRORS,
)
async def upload_file(
    request: Request,
    user: VerifiedUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    jobs: JobsDep,
) -> File:
    # Nothing is written until the body is in; ending the transaction that loading the
    # user began frees the connection (and SQLite's write lock) for the upload's length.
    await session.commit()
    try:
        boundary = multipart_boundary(request.headers.get("content-type"))
        check_declared_length(request.headers.get("content-length"), settings.MAX_UPLOAD_BYTES)
        stored = await receive_upload(
            request.stream(),
            boundary,
            storage,
            limit=settings.MAX_UPLOAD_BYTES,
            allowed_types=settings.ALLOWED_UPLOAD_TYPES,
        )
    except UploadError as error:
        raise refuse(error) from None
    file = File(owner_id=user.id, **asdict(stored))
    session.add(file)
    # The job reads the row, so the row must be committed before the job can start.
    await session.commit()
    try:
        await jobs.enqueue(process_file_job(file.id))
    except QueueUnavailableError:
        # Undo, so that no file sits forever unprocessed.
        await session.delete(file)
        await session.commit()
        await storage.delete(file.object_key)
        raise
    logger.info("File %s uploaded by user %s: %d bytes", file.id, user.id, file.size)
    return file


@router.get("", response_model=FilePage)
async def list_files(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> FilePage:
    """The signed-in user's own files, newest first."""
    mine = select(File).where(File.owner_id == user.id)
    files = await session.scalars(
        mine.order_by(File.created_at.desc(), File.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(mine.subquery()))
    return FilePage(
        items=[FileOut.model_validate(file) for file in files],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


async def get_visible_file(file_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> File:
    # The owner's role comes with the file, in one query.
    found = (
        await session.execute(
            select(File, User.role).join(User, User.id == File.owner_id).where(File.id == file_id)
        )
    ).one_or_none()
    if found is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="No such file.")
    file, owner_role = found
    if file.owner_id != user.id and not manages(user.role, owner_role):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="No such file.")
    return file


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
    404: {"description": "No such file (or not one you may act on), or its content is gone"},
    503: {"description": "Storage is unreachable"},
}


async def download_response(storage: Storage, file: File) -> StreamingResponse:
    """The file streamed out of storage a chunk at a time, so memory stays flat however
    large it is. Both backends answer alike: S3 is read through the API rather than by
    a presigned URL, because S3 cannot be made to send X-Content-Type-Options."""
    chunks = storage.read(file.object_key)
    # The first chunk is read before the response starts, so that a missing object or
    # unreachable storage is still an error status, not a download cut short.
    first = await to_thread.run_sync(lambda: next(chunks, b""))
    return StreamingResponse(
        itertools.chain((first,), chunks),
        media_type=file.content_type,
        headers={
            "Content-Disposition": content_disposition(file.original_name),
            "Content-Length": str(file.size),
            **DOWNLOAD_HEADERS,
        },
    )


@router.get("/{file_id}/download", response_class=Response, responses=DOWNLOAD_RESPONSES)
async def download_file(file: VisibleFile, session: SessionDep, storage: StorageDep) -> Response:
    # A download lasts as long as the client takes to read it; ending the transaction
    # now gives the connection back to the pool, so slow readers cannot exhaust it.
    await session.commit()
    try:
        return await download_response(storage, file)
    except ObjectMissingError:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND, detail="The file's content is gone."
        ) from None
    except StorageUnavailableError:
        # The shared 503 message speaks of uploads ("nothing was stored").
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="File storage is unavailable; try the download again soon.",
            headers={"Retry-After": "30"},
        ) from None


@router.delete("/{file_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(file: VisibleFile, session: SessionDep, storage: StorageDep) -> None:
    # The object goes first: if storage fails, the row stays and the delete can be
    # tried again, rather than leaving an object nothing refers to.
    await storage.delete(file.object_key)
    await session.delete(file)
    logger.info("File %s deleted", file.id)
