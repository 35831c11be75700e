"""ballot keys: a WeChat voter's ballot is keyed by a hash of poll and openid in named polls too (it was
`o:<openid>`), so a ballot kept after its voter was detached (bot/services/forget.py) still blocks a second
ballot when they follow again, without naming them

Data only: named polls' `o:` keys are rewritten in place; the openid column and the voter's name are unchanged.

Revision ID: 0020
Revises: 0019
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, poll_id, voter_key FROM poll_ballots WHERE voter_key LIKE 'o:%'"))
    for row_id, poll_id, key in rows.fetchall():
        hashed = "h:" + hashlib.sha256(f"{poll_id}:{key[2:]}".encode()).hexdigest()
        conn.execute(sa.text("UPDATE poll_ballots SET voter_key = :k WHERE id = :id"), {"k": hashed, "id": row_id})


def downgrade() -> None:
    # A named poll's ballot still holds its voter's openid: the old key can be rebuilt from it.
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE poll_ballots SET voter_key = 'o:' || openid WHERE openid IS NOT NULL AND source = 'wechat' "
            "AND poll_id IN (SELECT id FROM polls WHERE anonymous = :no)"
        ),
        {"no": False},
    )
