"""Administrative commands: `python -m app.cli --help`.

python -m app.cli create-owner                     # asks for the password
OWNER_PASSWORD=... python -m app.cli create-owner  # for scripts and CI
python -m app.cli check-email                      # would create-owner take the email?
python -m app.cli migrate                          # upgrade the database, say what changed
python -m app.cli owner                            # the active owner; exit 3 if none
python -m app.cli owner --json                     # {"owner": EMAIL or null}, for scripts
python -m app.cli openapi                          # write the API document, openapi.json
python -m app.cli openapi --check                  # exit 1 when openapi.json is out of date
python -m app.cli sweep-storage                    # remove what cut-short uploads left
python -m app.cli prune                            # delete old audit events and invitations

`migrate` and `owner --json` give setup scripts (tools/day_one.py) a plain answer to
"what changed?"; check-email lets them refuse a bad owner email before they ask for a
password.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import PROJECT_DIR, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.emails import normalise_email
from app.core.job_runtime import inline_runtime
from app.core.migrations import current_revision, head_revisions, upgrade_to_head
from app.core.rbac import Role
from app.core.security import hash_password, password_problem
from app.models import AuditType, User
from app.models.audit import TargetType

PASSWORD_VARIABLE = "OWNER_PASSWORD"  # noqa: S105 - the variable's name, not a password
# `owner`'s exit status when there is none: distinct from 1, which means an error.
NO_OWNER = 3


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def read_password(email: str) -> str:
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if not sys.stdin.isatty():
        raise CommandError(
            f"No terminal to ask for the password; set {PASSWORD_VARIABLE} to pass it."
        )
    password = getpass.getpass(f"Password for {email}: ")
    if getpass.getpass("Repeat it: ") != password:
        raise CommandError("The two passwords differ; nothing was changed.")
    return password


@asynccontextmanager
async def database_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A transaction on the app's database; a database without the schema is a
    CommandError that says what to run."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            yield session
    except (OperationalError, ProgrammingError) as exc:
        raise CommandError(
            f"The database is not ready (run `alembic upgrade head` first): {exc.orig or exc}"
        ) from None
    finally:
        await engine.dispose()


async def active_owner(session: AsyncSession) -> User | None:
    return (
        await session.scalars(select(User).where(User.role == Role.OWNER, User.is_active).limit(1))
    ).first()


async def create_owner(settings: Settings, email: str, *, if_none: bool) -> str:
    """Create the owner account, or promote an existing account; return what was done."""
    async with database_session(settings) as session:
        owner = await active_owner(session)
        if if_none and owner is not None:
            return f"An owner exists already ({owner.email}); nothing to do."
        user = (await session.scalars(select(User).where(User.email == email))).one_or_none()
        # Imported here, as in sweep(): organizations bring the file service with them.
        from app.services import audit_service, organization_service

        if user is not None:
            if user.role is Role.OWNER and user.is_active:
                return f"{email} is an owner already; nothing to do."
            if user.role is not Role.OWNER:
                audit_service.record(
                    session,
                    AuditType.USER_ROLE_CHANGED,
                    None,
                    target=(TargetType.USER, user.id),
                    details={"from": user.role.value, "to": Role.OWNER.value, "by": "cli"},
                )
            if not user.is_active:
                audit_service.record(
                    session,
                    AuditType.USER_ACTIVATED,
                    None,
                    target=(TargetType.USER, user.id),
                    details={"by": "cli"},
                )
            user.role, user.is_active, user.is_verified = Role.OWNER, True, True
            return f"{email} is now an owner; its password is unchanged."
        password = read_password(email)
        problem = password_problem(password, email=email)
        if problem:
            raise CommandError(f"{problem} Nothing was changed.")
        owner = User(
            email=email,
            hashed_password=await hash_password(password),
            role=Role.OWNER,
            is_verified=True,
        )
        session.add(owner)
        await session.flush()
        audit_service.record(
            session,
            AuditType.USER_REGISTERED,
            None,
            target=(TargetType.USER, owner.id),
            details={"role": Role.OWNER.value, "by": "cli"},
        )
        await organization_service.create_personal(session, owner)
        return f"Created the owner account {email}."


async def find_owner(settings: Settings) -> str | None:
    """The email of an active owner, or None when there is none yet."""
    async with database_session(settings) as session:
        owner = await active_owner(session)
        return owner.email if owner else None


MERGE_HEADS_COMMAND = 'uv run --directory backend alembic merge -m "merge migration heads" heads'


def migrate(settings: Settings) -> str:
    """Upgrade the database to the newest revision; say what that changed."""
    heads = head_revisions()
    if len(heads) > 1:
        raise CommandError(
            f"The migrations have {len(heads)} heads ({', '.join(sorted(heads))}), so there "
            "is no one revision to upgrade to. Join them with a merge revision, then migrate "
            f"again:\n  {MERGE_HEADS_COMMAND}"
        )
    head = heads[0] if heads else None
    try:
        before = asyncio.run(current_revision(settings))
    except (OSError, OperationalError) as exc:
        reason = exc.orig if isinstance(exc, OperationalError) else exc
        raise CommandError(f"Cannot reach the database: {reason}") from None
    if before == head:
        return f"The database is at the newest revision ({head}); nothing to do."
    upgrade_to_head(settings.DATABASE_URL)
    return f"Migrated the database from {before or 'an empty schema'} to revision {head}."


# The API document the project commits, for the frontends and clients built on it.
OPENAPI_FILE = PROJECT_DIR / "openapi.json"
OPENAPI_COMMAND = "uv run --directory backend python -m app.cli openapi"


def openapi_document(settings: Settings) -> str:
    """The app's OpenAPI document as the project commits it."""
    # Imported here: building the app is needed by this command alone.
    from app.main import create_app

    document = create_app(settings).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_openapi(settings: Settings, path: Path, *, check: bool) -> str:
    document = openapi_document(settings)
    if check:
        if not path.is_file() or path.read_text(encoding="utf-8") != document:
            raise CommandError(
                f"{path.name} does not match the code; write it again with `{OPENAPI_COMMAND}` "
                "and commit it."
            )
        return f"{path.name} matches the code."
    path.write_text(document, encoding="utf-8")
    return f"Wrote {path}."


def sweep(settings: Settings) -> str:
    # Imported here: the file service brings storage and uploads, which no other command
    # needs, and setup scripts run these commands often.
    from app.services import file_service

    with inline_runtime(settings) as runtime:
        swept = runtime.run(file_service.sweep_with(runtime))
    if swept is None:
        return "Storage is turned off (STORAGE_BACKEND=none): nothing to sweep."
    return (
        f"Removed {swept.objects_removed} object(s) no file referred to, "
        f"{swept.files_removed} file(s) whose object was gone, "
        f"and {swept.uploads_aborted} upload(s) never completed."
    )


def prune(settings: Settings) -> str:
    # Imported here, as in sweep().
    from app.services import retention_service

    with inline_runtime(settings) as runtime:
        pruned = runtime.run(retention_service.prune_with(runtime))
    return (
        f"Deleted {pruned.audit_events} audit event(s) older than "
        f"{settings.AUDIT_RETENTION_DAYS} days (AUDIT_RETENTION_DAYS) and "
        f"{pruned.invitations} expired invitation(s)."
    )


def normalised_email(settings: Settings, given: str | None) -> str:
    """The owner's address, from --email or OWNER_EMAIL, by the rule the API applies; in
    production a special-use domain is refused, since it cannot receive mail."""
    source = "--email" if given is not None else "OWNER_EMAIL"
    try:
        return normalise_email(
            settings.OWNER_EMAIL if given is None else given,
            allow_special_use=not settings.is_production,
        )
    except ValueError as exc:
        raise CommandError(
            f"{exc} It came from {source}: set OWNER_EMAIL in the settings (.env), or pass --email."
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.cli", description="Administrative commands."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    owner = commands.add_parser(
        "create-owner",
        help="create the first owner account, or make an existing account an owner",
        description=(
            "Create an owner account (verified, able to manage admins), or give an existing "
            f"account the owner role. The password is asked for, or read from {PASSWORD_VARIABLE}."
        ),
    )
    owner.add_argument(
        "--email", help="the account's email (default: OWNER_EMAIL from the settings)"
    )
    owner.add_argument(
        "--if-none",
        action="store_true",
        help="do nothing when an active owner exists already (for setup scripts)",
    )
    check = commands.add_parser(
        "check-email",
        help="say whether create-owner would take the email, without asking for a password",
    )
    check.add_argument(
        "--email", help="the address to check (default: OWNER_EMAIL from the settings)"
    )
    commands.add_parser(
        "migrate",
        help="upgrade the database to the newest revision and say what changed",
    )
    owner_query = commands.add_parser(
        "owner", help="print the email of an active owner; exit status 3 when there is none"
    )
    owner_query.add_argument(
        "--json",
        action="store_true",
        help='print {"owner": EMAIL} or {"owner": null} and exit 0 either way (for scripts)',
    )
    commands.add_parser(
        "sweep-storage",
        help="remove objects no file refers to and files whose object is gone, now",
        description=(
            "What a worker does every STORAGE_SWEEP_INTERVAL_SECONDS: remove objects no file "
            "refers to, files whose object is gone and uploads never completed, if older "
            "than STORAGE_SWEEP_GRACE_SECONDS."
        ),
    )
    commands.add_parser(
        "prune",
        help="delete audit events past AUDIT_RETENTION_DAYS and expired invitations, now",
        description=(
            "What a worker does every hour: delete the audit events older than "
            "AUDIT_RETENTION_DAYS and the invitations that have expired."
        ),
    )
    document = commands.add_parser(
        "openapi", help="write the API document (openapi.json at the project root)"
    )
    document.add_argument(
        "--output", type=Path, default=OPENAPI_FILE, help=f"where to (default: {OPENAPI_FILE})"
    )
    document.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the file differs from what the code would write",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "openapi":
            print(write_openapi(settings, args.output, check=args.check))
            return 0
        if args.command == "migrate":
            print(migrate(settings))
            return 0
        if args.command == "sweep-storage":
            print(sweep(settings))
            return 0
        if args.command == "prune":
            print(prune(settings))
            return 0
        if args.command == "owner":
            found = asyncio.run(find_owner(settings))
            if args.json:
                print(json.dumps({"owner": found}))
                return 0
            print(found or "There is no active owner yet.")
            return 0 if found else NO_OWNER
        email = normalised_email(settings, args.email)
        if args.command == "check-email":
            print(f"{email} can be the owner's email.")
            return 0
        if settings.migrate_on_start:
            upgrade_to_head(settings.DATABASE_URL)
        print(asyncio.run(create_owner(settings, email, if_none=args.if_none)))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
