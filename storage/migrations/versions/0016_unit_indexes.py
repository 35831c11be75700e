"""case_co_units and indexes of one unit's cases, for the inbox of a unit handler

Revision ID: 0016
Revises: 0015
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

RUNNING = sa.text("status IN ('accepted', 'assigned', 'in_progress', 'pending', 'reopened')")
DUE = "(CASE WHEN status = 'pending' THEN accept_due_at ELSE handle_due_at END)"


def upgrade() -> None:
    op.create_table(
        "case_co_units",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_co_units_case_id_cases")),
        sa.PrimaryKeyConstraint("case_id", "unit", name=op.f("pk_case_co_units")),
    )
    op.create_index("ix_case_co_units_unit", "case_co_units", ["unit", "case_id"])
    op.create_index(
        "ix_cases_unit_due", "cases", ["lead_unit", sa.text(DUE), "id"], sqlite_where=RUNNING, postgresql_where=RUNNING
    )
    op.create_index("ix_cases_unit_created", "cases", ["lead_unit", "created_at", "id"])
    # Its first column does what the index of lead_unit alone did: one index less to write per case.
    op.drop_index("ix_cases_lead_unit", table_name="cases")
    # The co-handling units of the cases already assigned.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, co_units FROM cases WHERE co_units IS NOT NULL")).all()
    pairs = []
    for case_id, co_units in rows:
        units = json.loads(co_units) if isinstance(co_units, str) else co_units
        pairs += [{"case_id": case_id, "unit": unit} for unit in dict.fromkeys(units or [])]
    if pairs:
        conn.execute(sa.text("INSERT INTO case_co_units (case_id, unit) VALUES (:case_id, :unit)"), pairs)


def downgrade() -> None:
    op.create_index("ix_cases_lead_unit", "cases", ["lead_unit"])
    op.drop_index("ix_cases_unit_created", table_name="cases")
    op.drop_index("ix_cases_unit_due", table_name="cases")
    op.drop_table("case_co_units")
