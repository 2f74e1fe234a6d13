"""Files: who sees which, uploading, downloading, deleting, and the job that checks them.

A file belongs to an organization, and every lookup is scoped to it: every member sees
the organization's files, and to anyone else a file does not exist (404, not 403, so ids
of other organizations' files reveal nothing). Deleting one follows the rule for
accounts (rbac.manages) within the organization: owners delete anyone's, admins their
own and members', members their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from anyio import to_thread
from sqlalchemy import delete as delete_rows
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.errors import AppError, NotFoundError, raises
from app.core.job_runtime import JobRuntime, job_runtime
from app.core.queue import JobCall, Jobs, QueueUnavailableError, final_attempt
from app.core.rbac import Role, manages
from app.core.storage import ObjectMissingError, Storage, StorageUnavailableError
from app.models import AuditType, File, FileStatus, Membership, OrgAccess, Organization
from app.models.audit import TargetType
from app.services import audit_service
from app.services.storage_service import create_storage
from app.services.upload_service import (
    MalformedUploadError,
    UnsupportedFileTypeError,
    UploadTooLargeError,
    check_declared_length,
    multipart_boundary,
    receive_upload,
)

logger = logging.getLogger(__name__)

NO_SUCH_FILE = "No such file."
UPLOADER_GONE = (
    "The organization is gone, or you left it, while the file was uploading; it was discarded."
)


class FilePolicyError(AppError):
    """The caller sees the file but may not delete it."""

    status_code = 403


async def list_in(
    session: AsyncSession, organization: Organization, limit: int, offset: int
) -> tuple[Sequence[File], int]:
    """A page of the organization's files, newest first, and how many there are."""
    theirs = select(File).where(File.organization_id == organization.id)
    files = await session.scalars(
        theirs.order_by(File.created_at.desc(), File.id).limit(limit).offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(theirs.subquery()))
    return files.all(), total or 0


@raises(NotFoundError)
async def visible_file(session: AsyncSession, member: OrgAccess, file_id: uuid.UUID) -> File:
    """The file, if it belongs to the member's organization; NotFoundError otherwise, as
    for no file."""
    file = await session.scalar(
        select(File).where(File.id == file_id, File.organization_id == member.organization.id)
    )
    if file is None:
        raise NotFoundError(NO_SUCH_FILE)
    return file


async def _still_member(session: AsyncSession, member: OrgAccess) -> bool:
    found = await session.scalar(
        select(Membership.user_id).where(
            Membership.organization_id == member.organization.id,
            Membership.user_id == member.user.id,
        )
    )
    return found is not None


@raises(
    NotFoundError,
    UploadTooLargeError,
    UnsupportedFileTypeError,
    MalformedUploadError,
    StorageUnavailableError,
    QueueUnavailableError,
)
async def upload(
    session: AsyncSession,
    jobs: Jobs,
    storage: Storage,
    settings: Settings,
    uploader: OrgAccess,
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
) -> File:
    """Stream a multipart body into storage, record the file in the uploader's
    organization, and queue its check."""
    # Nothing is written until the body is in; ending the transaction that loading the
    # user began frees the connection (and SQLite's write lock) for the upload's length.
    await session.commit()
    boundary = multipart_boundary(content_type)
    check_declared_length(content_length, settings.MAX_UPLOAD_BYTES)
    stored = await receive_upload(
        body,
        boundary,
        storage,
        limit=settings.MAX_UPLOAD_BYTES,
        allowed_types=settings.ALLOWED_UPLOAD_TYPES,
    )
    file = File(
        organization_id=uploader.organization.id, owner_id=uploader.user.id, **asdict(stored)
    )
    # The upload took a while: the uploader may have left the organization, or it may be
    # gone, meanwhile. Then nothing is recorded, and the object goes.
    try:
        if await _still_member(session, uploader):
            session.add(file)
            # The job reads the row, so the row must be committed before it can start.
            await session.commit()
            recorded = True
        else:
            recorded = False
    except IntegrityError:
        await session.rollback()
        recorded = False
    if not recorded:
        await storage.delete(file.object_key)
        raise NotFoundError(UPLOADER_GONE)
    try:
        await jobs.enqueue(process_file_job(file.id))
    except QueueUnavailableError:
        # Undo, so that no file sits forever unprocessed.
        await session.delete(file)
        await session.commit()
        await storage.delete(file.object_key)
        raise
    logger.info(
        "File %s uploaded by %s into organization %s: %d bytes",
        file.id,
        uploader.actor,
        uploader.organization.id,
        file.size,
    )
    return file


@raises(ObjectMissingError, StorageUnavailableError)
async def content(session: AsyncSession, storage: Storage, file: File) -> Iterator[bytes]:
    """The file's bytes, a chunk at a time, so memory stays flat however large it is.

    The first chunk is read before this returns, so that a missing object or unreachable
    storage is still an error status, not a download cut short.
    """
    # A download lasts as long as the client takes to read it; ending the transaction
    # now gives the connection back to the pool, so slow readers cannot exhaust it.
    await session.commit()
    chunks = storage.read(file.object_key)
    first = await to_thread.run_sync(lambda: next(chunks, b""))
    return itertools.chain((first,), chunks)


@raises(FilePolicyError, StorageUnavailableError)
async def delete(session: AsyncSession, storage: Storage, actor: OrgAccess, file: File) -> None:
    if file.owner_id != actor.user.id:
        # An uploader who has left the organization counts as a member.
        uploader_role = await session.scalar(
            select(Membership.role).where(
                Membership.organization_id == file.organization_id,
                Membership.user_id == file.owner_id,
            )
        )
        if not manages(actor.role, uploader_role or Role.MEMBER):
            raise FilePolicyError(
                "You may delete your own files; ask an admin of the organization."
            )
    # The object goes first: if storage fails, the row stays and the delete can be
    # tried again, rather than leaving an object nothing refers to.
    await storage.delete(file.object_key)
    await session.delete(file)
    audit_service.record(
        session,
        AuditType.FILE_DELETED,
        actor,
        target=(TargetType.FILE, file.id),
        details={
            "name": file.original_name,
            "size": file.size,
            "uploaded_by": str(file.owner_id) if file.owner_id else None,
        },
    )
    logger.info("File %s deleted by %s", file.id, actor.actor)


# Object keys per removal job: a large organization's files go in several jobs, none of
# them too big for the queue or too long for the job timeout.
KEYS_PER_JOB = 500


async def remove_objects_of(session: AsyncSession, jobs: Jobs, organization_id: uuid.UUID) -> None:
    """Queue the removal of the organization's objects, to run once its deletion commits."""
    keys = (
        await session.scalars(
            select(File.object_key).where(File.organization_id == organization_id)
        )
    ).all()
    for start in range(0, len(keys), KEYS_PER_JOB):
        await jobs.enqueue(remove_objects_job(keys[start : start + KEYS_PER_JOB]))


def remove_objects(keys: list[str]) -> None:
    """The job: remove objects whose files are gone. Removing one twice is harmless."""
    runtime = job_runtime()
    storage = job_storage(runtime)
    if storage is None:
        return
    runtime.run(_remove_objects(storage, keys))


async def _remove_objects(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        await storage.delete(key)
    logger.info("Removed %d objects of deleted files", len(keys))


def remove_objects_job(keys: Sequence[str]) -> JobCall:
    return JobCall(
        remove_objects, (list(keys),), description=f"remove_objects ({len(keys)} objects)"
    )


def process_file(file_id: str) -> None:
    """The job: read the stored object back, measure it, and mark the file ready or
    failed."""
    runtime = job_runtime()
    runtime.run(_process_file(uuid.UUID(file_id), runtime))


def job_storage(runtime: JobRuntime) -> Storage | None:
    """The storage the settings choose, made once per job runtime."""
    return runtime.client("storage", lambda: create_storage(runtime.settings))


def process_file_job(file_id: uuid.UUID) -> JobCall:
    return JobCall(process_file, (str(file_id),), description=f"process_file {file_id}")


async def _process_file(file_id: uuid.UUID, runtime: JobRuntime) -> None:
    # A statement on either side of the read, each on its own: no connection is held
    # while the object streams back from storage.
    async with runtime.read_sessionmaker() as session:
        file = await session.get(File, file_id)
    if file is None:
        logger.info("File %s was deleted before it was processed", file_id)
        return
    storage = job_storage(runtime)
    status, detail = await asyncio.to_thread(_measure, file, storage)
    await runtime.execute_alone(
        update(File).where(File.id == file_id).values(status=status, processed_at=utcnow())
    )
    log = logger.info if status is FileStatus.READY else logger.warning
    log("File %s %s: %s", file_id, status.value, detail)


def _measure(file: File, storage: Storage | None) -> tuple[FileStatus, str]:
    if storage is None:
        return FileStatus.FAILED, "storage is turned off (STORAGE_BACKEND=none)"
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in storage.read(file.object_key):
            digest.update(chunk)
            size += len(chunk)
    except ObjectMissingError:
        return FileStatus.FAILED, "the object is missing from storage"
    except Exception:
        # Storage trouble may pass: RQ retries the job, and only the last failure
        # marks the file failed.
        if not final_attempt():
            raise
        logger.exception("File %s could not be read from storage", file.id)
        return FileStatus.FAILED, "storage could not be read"
    if (size, digest.hexdigest()) != (file.size, file.checksum_sha256):
        return FileStatus.FAILED, f"stored object differs from the upload ({size} bytes)"
    return FileStatus.READY, f"{size} bytes, sha256 {file.checksum_sha256}"


# An upload still unfinished after this long was abandoned by the process that began it.
UPLOAD_TIME_LIMIT = timedelta(days=1)


@dataclass(frozen=True)
class Sweep:
    objects_removed: int
    files_removed: int
    uploads_aborted: int


async def sweep_storage(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    *,
    now: datetime,
    grace: timedelta,
) -> Sweep:
    """Remove what an upload or a delete cut short: objects no file refers to (a process
    ended between storing an upload and saving its row), files whose object is gone (a
    delete that removed the object and failed before the row), and uploads never
    completed. Only what is older than `grace` is touched, so uploads in progress and
    files being saved are safe: an upload's object is complete, and visible, only just
    before its row is saved, and a row is saved only after its object.

    Leftovers are few. A sweep that finds more than SWEEP_LIMIT of either kind is looking
    at the wrong database or the wrong disk (a worker with local storage on a machine
    of its own, say) and removes none of that kind; it logs an error instead.

    The keys are held in memory, a hundred bytes or so each: millions of files fit.
    """
    cutoff = now - grace
    stored = await to_thread.run_sync(lambda: list(storage.objects()))
    async with sessionmaker() as session:
        referenced = set(await session.scalars(select(File.object_key)))
        rows = (
            await session.execute(select(File.id, File.object_key).where(File.created_at < cutoff))
        ).all()
    present = {item.key for item in stored}
    orphans = [item.key for item in stored if item.modified < cutoff and item.key not in referenced]
    if _too_many("objects no file refers to", len(orphans), len(stored)):
        orphans = []
    removed = 0
    for key in orphans:
        # Asked again just before: on S3 a multipart upload's object is dated from the
        # upload's start, so a long upload can look old in the moment before its row.
        async with sessionmaker() as session:
            if await session.scalar(select(File.id).where(File.object_key == key)):
                continue
        await storage.delete(key)
        removed += 1
        logger.warning("Object %s belonged to no file; removed", key)
    # Each file that the listing lacks is looked up on its own before it goes.
    missing = [(file_id, key) for file_id, key in rows if key not in present]
    if _too_many("files whose object is gone", len(missing), len(referenced)):
        missing = []
    gone = [
        file_id for file_id, key in missing if not await to_thread.run_sync(storage.exists, key)
    ]
    if gone:
        async with sessionmaker.begin() as session:
            await session.execute(delete_rows(File).where(File.id.in_(gone)))
    for file_id in gone:
        logger.warning("File %s had no object in storage; removed", file_id)
    aborted = await to_thread.run_sync(storage.abort_stale_uploads, now - UPLOAD_TIME_LIMIT)
    return Sweep(objects_removed=removed, files_removed=len(gone), uploads_aborted=aborted)


# The most a sweep removes of one kind: this many, or this share of what there is.
SWEEP_LIMIT = (10, 0.05)


def _too_many(what: str, found: int, total: int) -> bool:
    count, share = SWEEP_LIMIT
    if found <= max(count, share * total):
        return False
    logger.error(
        "Storage sweep found %d %s out of %d: more than leftovers, so it removes none. "
        "Check that this process uses the API's database and storage (DATABASE_URL, "
        "S3_BUCKET or, for local storage, the same UPLOAD_DIR on the same machine).",
        found,
        what,
        total,
    )
    return True


async def sweep_with(runtime: JobRuntime) -> Sweep | None:
    """The sweep on a job runtime's database and storage; None when storage is off."""
    storage = job_storage(runtime)
    if storage is None:
        return None
    grace = timedelta(seconds=runtime.settings.STORAGE_SWEEP_GRACE_SECONDS)
    return await sweep_storage(runtime.sessionmaker, storage, now=utcnow(), grace=grace)


def sweep_storage_now() -> None:
    """The periodic job (the worker's keeper queues it every STORAGE_SWEEP_INTERVAL_SECONDS)."""
    runtime = job_runtime()
    swept = runtime.run(sweep_with(runtime))
    if swept is not None:
        logger.info("Storage swept: %s", swept)


def sweep_storage_job() -> JobCall:
    return JobCall(sweep_storage_now, (), description="sweep_storage", retry=False)
