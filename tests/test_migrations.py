"""Alembic migrations are the only way the schema changes: the migrated database must match the models."""

import warnings

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from storage.db import Database
from storage.models import Base

# Indexes on an expression: PostgreSQL hands back the expression rewritten (casts, parentheses), which Alembic
# cannot compare with the model's text, so it reports them as changed. They are checked by name instead.
EXPRESSION_INDEXES = {"ix_cases_due", "ix_cases_unit_due"}
# The inbox's text search (migration 0017) is not in the models: SQLite's FTS5 table (and the tables FTS5 keeps
# behind it), PostgreSQL's trigram indexes. Checked by name instead.
SEARCH_TABLES = {"cases_search", "cases_search_data", "cases_search_idx", "cases_search_docsize", "cases_search_config"}
SEARCH_INDEXES = {"ix_cases_description_trgm", "ix_cases_place_trgm"}


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
    diff = [d for d in diff if not (d[0] in expression_only and d[1].name in EXPRESSION_INDEXES | SEARCH_INDEXES)]
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name in SEARCH_TABLES)]
    assert diff == []
    assert EXPRESSION_INDEXES <= indexes
    if db_url.startswith("sqlite"):
        assert "cases_search" in await _tables(db_url)
    else:
        assert SEARCH_INDEXES <= indexes


async def _tables(db_url: str) -> set[str]:
    db = Database(db_url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            return set(rows.scalars())
    finally:
        await db.dispose()
