"""Organizations and memberships; files belong to an organization.

Every existing account gets a personal organization, of which it is the owner, as a new
account does on registration; each existing file moves into its uploader's.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = sa.Enum("owner", "admin", "member", name="membership_role", native_enum=False, length=16)


def upgrade() -> None:
    organizations = op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    memberships = op.create_table(
        "memberships",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_memberships_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("organization_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"], unique=False)

    connection = op.get_bind()
    users = sa.table(
        "users", sa.column("id", sa.Uuid()), sa.column("email"), sa.column("full_name")
    )
    now = datetime.now(UTC)
    names = {
        row.id: personal_name(row.full_name, row.email)
        for row in connection.execute(sa.select(users))
    }
    personal = {user_id: uuid.uuid4() for user_id in names}
    if personal:
        op.bulk_insert(
            organizations,
            [
                {"id": org_id, "name": names[user_id], "created_at": now}
                for user_id, org_id in personal.items()
            ],
        )
        op.bulk_insert(
            memberships,
            [
                {"organization_id": org_id, "user_id": user_id, "role": "owner", "created_at": now}
                for user_id, org_id in personal.items()
            ],
        )

    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("organization_id", sa.Uuid(), nullable=True))
    files = sa.table(
        "files", sa.column("owner_id", sa.Uuid()), sa.column("organization_id", sa.Uuid())
    )
    for user_id, org_id in personal.items():
        connection.execute(
            files.update().where(files.c.owner_id == user_id).values(organization_id=org_id)
        )
    with op.batch_alter_table("files") as batch:
        batch.alter_column("organization_id", existing_type=sa.Uuid(), nullable=False)
        # A file stays its organization's when the account that uploaded it goes.
        batch.alter_column("owner_id", existing_type=sa.Uuid(), nullable=True)
        batch.drop_constraint(batch.f("fk_files_owner_id_users"), type_="foreignkey")
        batch.create_foreign_key(
            batch.f("fk_files_owner_id_users"), "users", ["owner_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            batch.f("fk_files_organization_id_organizations"),
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(batch.f("ix_files_organization_id"), ["organization_id"], unique=False)


def personal_name(full_name: str | None, email: str) -> str:
    """The name a personal organization starts with, as organization_service.personal_name
    gives it (a migration keeps its own copy: the app's code will change, this must not)."""
    who = full_name or email.split("@", 1)[0]
    return f"{who}'s organization"[:120]


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM files WHERE owner_id IS NULL"))
    with op.batch_alter_table("files") as batch:
        batch.drop_index(batch.f("ix_files_organization_id"))
        batch.drop_constraint(batch.f("fk_files_organization_id_organizations"), type_="foreignkey")
        batch.drop_column("organization_id")
        batch.drop_constraint(batch.f("fk_files_owner_id_users"), type_="foreignkey")
        batch.create_foreign_key(
            batch.f("fk_files_owner_id_users"), "users", ["owner_id"], ["id"], ondelete="CASCADE"
        )
        batch.alter_column("owner_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("organizations")
