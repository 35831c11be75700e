"""deadlines: reminder rows, the working-day calendar, the case's deadline flags and extension

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26 00:00:00
"""

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_days",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_calendar_days")),
    )
    op.create_table(
        "deadline_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("clock", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fire_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fired_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_deadline_reminders_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadline_reminders")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_deadline_reminders_dedupe_key")),
    )
    with op.batch_alter_table("deadline_reminders", schema=None) as batch_op:
        batch_op.create_index("ix_deadline_reminders_due", ["status", "fire_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deadline_reminders_case_id"), ["case_id"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline_state", sa.String(length=16), server_default="ok", nullable=False))
        batch_op.add_column(sa.Column("escalated_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("extended_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("extension_days", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_deadline_state"), ["deadline_state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_deadline_state"))
        batch_op.drop_column("extension_days")
        batch_op.drop_column("extended_at")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("deadline_state")

    with op.batch_alter_table("deadline_reminders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deadline_reminders_case_id"))
        batch_op.drop_index("ix_deadline_reminders_due")

    op.drop_table("deadline_reminders")
    op.drop_table("calendar_days")
