"""outbox: partial indexes of pending rows, for the delivery worker's claim

The claim takes the first due rows by id, and skips a row while an earlier row of the same resident is still
pending. Both look only at pending rows, a small share of a table that keeps every sent notice: indexes of
those rows alone stay small, and give PostgreSQL's planner the right plan even before it has statistics.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_pending", ["id", "next_attempt_at"], sqlite_where=PENDING, postgresql_where=PENDING
        )
        batch_op.drop_index("ix_outbox_openid_id")
        batch_op.create_index(
            "ix_outbox_openid_pending", ["openid", "id"], sqlite_where=PENDING, postgresql_where=PENDING
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_openid_pending")
        batch_op.create_index("ix_outbox_openid_id", ["openid", "id"], unique=False)
        batch_op.drop_index("ix_outbox_pending")
