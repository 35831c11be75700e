"""grids and opinion polls: the geography tree, grid workers and their invites, residents' grids, polls with
their recipients, ballots and durable jobs; the grid a case was filed from

residents.grid_id and cases.grid_id are plain columns added in place (no table rebuild on SQLite, which would
drop the search triggers of 0017 on cases).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TS = storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["areas.id"], name=op.f("fk_areas_parent_id_areas")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_areas")),
        sa.UniqueConstraint("code", name=op.f("uq_areas_code")),
        sa.UniqueConstraint("parent_id", "name", name="uq_areas_parent_name"),
    )
    op.create_index("ix_areas_parent_id", "areas", ["parent_id"])
    op.create_table(
        "grid_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=True),
        sa.Column("operator_name", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("bound_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_grid_workers_name")),
        sa.UniqueConstraint("openid", name=op.f("uq_grid_workers_openid")),
        sa.UniqueConstraint("operator_name", name=op.f("uq_grid_workers_operator_name")),
    )
    op.create_table(
        "grid_worker_areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["area_id"], ["areas.id"], name=op.f("fk_grid_worker_areas_area_id_areas")),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["grid_workers.id"], name=op.f("fk_grid_worker_areas_worker_id_grid_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_worker_areas")),
        sa.UniqueConstraint("worker_id", "area_id", name="uq_grid_worker_areas_worker_area"),
    )
    op.create_index("ix_grid_worker_areas_area_id", "grid_worker_areas", ["area_id"])
    op.create_table(
        "grid_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["grid_workers.id"], name=op.f("fk_grid_invites_worker_id_grid_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_grid_invites_code_hash")),
    )
    op.create_index("ix_grid_invites_worker_id", "grid_invites", ["worker_id"])
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("max_choices", sa.Integer(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("live_results", sa.Boolean(), nullable=False),
        sa.Column("allow_change", sa.Boolean(), nullable=False),
        sa.Column("notify_voters", sa.Boolean(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("grid_ids", sa.JSON(), nullable=False),
        sa.Column("creator_worker_id", sa.Integer(), nullable=True),
        sa.Column("creator_name", sa.String(length=64), nullable=False),
        sa.Column("created_via", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closes_at", TS, nullable=False),
        sa.Column("remind_before_minutes", sa.Integer(), nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("audience_size", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reached", sa.Integer(), server_default="0", nullable=False),
        sa.Column("waiting", sa.Integer(), server_default="0", nullable=False),
        sa.Column("distributed_at", TS, nullable=True),
        sa.Column("case_number", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["creator_worker_id"], ["grid_workers.id"], name=op.f("fk_polls_creator_worker_id_grid_workers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
    )
    op.create_index("ix_polls_creator_worker_id", "polls", ["creator_worker_id"])
    op.create_index("ix_polls_status", "polls", ["status"])
    op.create_index("ix_polls_case_number", "polls", ["case_number"])
    op.create_table(
        "poll_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("told_at", TS, nullable=True),
        sa.Column("offered_at", TS, nullable=True),
        sa.Column("voted_at", TS, nullable=True),
        sa.Column("reminded_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["poll_id"], ["polls.id"], name=op.f("fk_poll_recipients_poll_id_polls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_recipients")),
        sa.UniqueConstraint("poll_id", "openid", name="uq_poll_recipients_poll_openid"),
    )
    op.create_index("ix_poll_recipients_openid", "poll_recipients", ["openid"])
    op.create_table(
        "poll_ballots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("voter_key", sa.String(length=96), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("voter_name", sa.String(length=80), nullable=True),
        sa.Column("entered_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["poll_id"], ["polls.id"], name=op.f("fk_poll_ballots_poll_id_polls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_ballots")),
        sa.UniqueConstraint("poll_id", "voter_key", name="uq_poll_ballots_poll_voter"),
    )
    op.create_table(
        "poll_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("fire_at", TS, nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("fired_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_through", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["poll_id"], ["polls.id"], name=op.f("fk_poll_jobs_poll_id_polls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_jobs")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_poll_jobs_dedupe_key")),
    )
    op.create_index("ix_poll_jobs_poll_id", "poll_jobs", ["poll_id"])
    op.create_index("ix_poll_jobs_due", "poll_jobs", ["status", "fire_at"])
    op.add_column("residents", sa.Column("grid_id", sa.Integer(), nullable=True))
    op.add_column("residents", sa.Column("display_name", sa.String(length=80), nullable=True))
    op.add_column("residents", sa.Column("polls_waiting", sa.Integer(), server_default="0", nullable=False))
    op.add_column("residents", sa.Column("is_gridworker", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index("ix_residents_grid_id", "residents", ["grid_id"])
    op.add_column("cases", sa.Column("grid_id", sa.Integer(), nullable=True))
    op.create_index("ix_cases_grid_id", "cases", ["grid_id"])


def downgrade() -> None:
    op.drop_index("ix_cases_grid_id", table_name="cases")
    op.drop_column("cases", "grid_id")  # in place: a rebuild of cases would drop 0017's triggers
    op.drop_index("ix_residents_grid_id", table_name="residents")
    with op.batch_alter_table("residents") as batch_op:
        for column in ("is_gridworker", "polls_waiting", "display_name", "grid_id"):
            batch_op.drop_column(column)
    for table in ("poll_jobs", "poll_ballots", "poll_recipients", "polls", "grid_invites", "grid_worker_areas"):
        op.drop_table(table)
    op.drop_table("grid_workers")
    op.drop_table("areas")
