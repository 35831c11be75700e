"""media: photos, voice and video of a case downloaded from WeChat into the file store

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 00:00:00
"""

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=128), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_media_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_media")),
        sa.UniqueConstraint("case_id", "media_id", name="uq_case_media_case_id_media_id"),
    )
    with op.batch_alter_table("case_media", schema=None) as batch_op:
        batch_op.create_index("ix_case_media_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_media_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_media_case_id"))
        batch_op.drop_index("ix_case_media_due")
    op.drop_table("case_media")
