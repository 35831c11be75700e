"""dispatch: joint dispatch (街道吹哨、部门报到) summons and their check-in clock

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-27 00:30:00
"""

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "summons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=80), nullable=False),
        sa.Column("urgency", sa.String(length=4), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("summoned_by", sa.String(length=64), nullable=False),
        sa.Column("summoned_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("checked_in_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checked_in_by", sa.String(length=64), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("escalated_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_summons_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_summons")),
        sa.UniqueConstraint("case_id", "unit", name="uq_summons_case_id_unit"),
    )
    with op.batch_alter_table("summons", schema=None) as batch_op:
        batch_op.create_index("ix_summons_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("summons", schema=None) as batch_op:
        batch_op.drop_index("ix_summons_due")
    op.drop_table("summons")
