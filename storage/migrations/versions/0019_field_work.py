"""field work: visits (巡回接访、上门服务) and the cases taken along, people's mediation with its sessions, files
attached to cases (agreements, commitments), and on cases the 包案领导, reopen count, 息诉罢访 and close reason

The cases columns are added in place (no table rebuild on SQLite, which would drop 0017's search triggers).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TS = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("planned_for", TS, nullable=True),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("place_label", sa.Text(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("team", sa.JSON(), nullable=False),
        sa.Column("met", sa.Text(), nullable=True),
        sa.Column("agreed", sa.Text(), nullable=True),
        sa.Column("photo_media_ids", sa.JSON(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )
    op.create_index("ix_visits_status", "visits", ["status"])
    op.create_index("ix_visits_done_at", "visits", ["done_at"])
    op.create_index("ix_visits_grid_id", "visits", ["grid_id"])
    op.create_table(
        "visit_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_visit_cases_case_id_cases")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_visit_cases_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_cases")),
        sa.UniqueConstraint("visit_id", "case_id", name="uq_visit_cases_visit_case"),
    )
    op.create_index("ix_visit_cases_case_id", "visit_cases", ["case_id"])
    op.create_table(
        "mediations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("mediators", sa.JSON(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_mediations_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mediations")),
    )
    op.create_index("ix_mediations_case_id", "mediations", ["case_id"])
    op.create_table(
        "mediation_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mediation_id", sa.Integer(), nullable=False),
        sa.Column("held_at", TS, nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["mediation_id"], ["mediations.id"], name=op.f("fk_mediation_sessions_mediation_id_mediations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mediation_sessions")),
    )
    op.create_index("ix_mediation_sessions_mediation_id", "mediation_sessions", ["mediation_id"])
    op.create_table(
        "case_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_files_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_files")),
    )
    op.create_index("ix_case_files_case_id", "case_files", ["case_id"])
    op.add_column("cases", sa.Column("leader", sa.String(length=64), nullable=True))
    op.add_column("cases", sa.Column("reopen_count", sa.Integer(), server_default="0", nullable=False))
    op.add_column("cases", sa.Column("commitment_at", TS, nullable=True))
    op.add_column("cases", sa.Column("close_reason", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for column in ("close_reason", "commitment_at", "reopen_count", "leader"):
        op.drop_column("cases", column)  # in place: a rebuild of cases would drop 0017's triggers
    for table in ("case_files", "mediation_sessions", "mediations", "visit_cases", "visits"):
        op.drop_table(table)
