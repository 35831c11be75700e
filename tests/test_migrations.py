"""Alembic migrations are the only way the schema changes: the migrated database must match the models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.db import Database
from storage.models import Base


async def test_migrated_schema_matches_the_models(db_url):
    db = Database(db_url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
            )
    finally:
        await db.dispose()
    assert diff == []
