"""Alembic migrations are the only way the schema changes: the migrated database must match the models."""

import warnings

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from storage.db import Database
from storage.models import Base

# Indexes on an expression: PostgreSQL hands back the expression rewritten (casts, parentheses), which Alembic
# cannot compare with the model's text, so it reports them as changed. They are checked by name instead.
EXPRESSION_INDEXES = {"ix_cases_due"}


def _compare(conn):
    with warnings.catch_warnings():  # the expression indexes' "cannot compare": checked by name below
        warnings.simplefilter("ignore")
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if conn.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    return diff, set(conn.execute(text(sql)).scalars())


async def test_migrated_schema_matches_the_models(db_url):
    db = Database(db_url)
    try:
        async with db.engine.connect() as conn:
            diff, indexes = await conn.run_sync(_compare)
    finally:
        await db.dispose()
    expression_only = {"add_index", "remove_index"}
    diff = [d for d in diff if not (d[0] in expression_only and d[1].name in EXPRESSION_INDEXES)]
    assert diff == []
    assert EXPRESSION_INDEXES <= indexes
