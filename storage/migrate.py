"""Run Alembic programmatically (`frontdoor db upgrade`, and `serve` on the embedded default)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Percent signs in passwords would otherwise be read as interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def pending(url: str) -> list[str]:
    """Head revisions the database has not reached yet (empty when current)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.db import Database

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())

    async def _current() -> set[str]:
        db = Database(url)
        try:
            async with db.read_engine.connect() as conn:
                return set(await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads()))
        finally:
            await db.dispose()

    return sorted(heads - asyncio.run(_current()))


def heads() -> set[str]:
    """The head revisions of the migrations shipped with this code (no database needed)."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
