"""The jobs. Each is a plain function of plain arguments, run by the RQ worker, or inline
in the API process when there is no Redis; each `..._job` function builds its call.

Jobs read their settings with `job_settings()` and open their own database connections:
they run in another process, or after the request's session has closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

from sqlalchemy import update

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.models import File, FileStatus, TokenPurpose
from app.services import account_service
from app.services.email_service import Email, build_message, get_backend
from app.services.storage_service import ObjectMissingError, create_storage
from app.worker.queue import EMAIL_QUEUE, JobCall, final_attempt, job_settings

logger = logging.getLogger(__name__)


def send_email(to: str, template: str, subject: str, context: dict[str, Any]) -> None:
    settings = job_settings()
    message = build_message(
        Email(to=to, template=template, subject=subject, context=context), settings
    )
    get_backend(settings).send(message)


def send_email_job(email: Email) -> JobCall:
    return JobCall(
        send_email,
        (email.to, email.template, email.subject, email.context),
        description=f"send_email {email.template} to {email.to}",
        queue=EMAIL_QUEUE,
    )


def send_account_link(email: str, purpose: str) -> None:
    """Look the address up and mail it a verification or reset link, if it is owed one."""
    asyncio.run(_send_account_link(email, TokenPurpose(purpose), job_settings()))


def send_account_link_job(email: str, purpose: TokenPurpose) -> JobCall:
    return JobCall(
        send_account_link,
        (email, purpose.value),
        description=f"send_account_link {purpose.value}",
        queue=EMAIL_QUEUE,
    )


async def _send_account_link(email: str, purpose: TokenPurpose, settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            message = await account_service.link_email(session, email, purpose, settings)
        # Sent after the commit, so that the link's token exists when it is opened.
        if message is not None:
            get_backend(settings).send(build_message(message, settings))
    finally:
        await engine.dispose()


def process_file(file_id: str) -> None:
    """Read the stored object back, measure it, and mark the file ready or failed."""
    asyncio.run(_process_file(uuid.UUID(file_id), job_settings()))


def process_file_job(file_id: uuid.UUID) -> JobCall:
    return JobCall(process_file, (str(file_id),), description=f"process_file {file_id}")


async def _process_file(file_id: uuid.UUID, settings: Settings) -> None:
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    try:
        # Short transactions on either side of the read: no connection is held while
        # the object streams back from storage.
        async with sessionmaker() as session:
            file = await session.get(File, file_id)
        if file is None:
            logger.info("File %s was deleted before it was processed", file_id)
            return
        status, detail = await asyncio.to_thread(_measure, file, settings)
        async with sessionmaker.begin() as session:
            await session.execute(
                update(File).where(File.id == file_id).values(status=status, processed_at=utcnow())
            )
        log = logger.info if status is FileStatus.READY else logger.warning
        log("File %s %s: %s", file_id, status.value, detail)
    finally:
        await engine.dispose()


def _measure(file: File, settings: Settings) -> tuple[FileStatus, str]:
    storage = create_storage(settings)
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
