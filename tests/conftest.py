"""Shared fixtures. Every database test runs on SQLite and on the machine's real PostgreSQL.

PostgreSQL: one throwaway database per test session (FRONTDOOR_TEST_PG_URL points at the server's `test`
database by default), tables truncated between tests. If the server is down the PostgreSQL half is skipped
locally but fails under FRONTDOOR_REQUIRE_PG=1, which .ci/run sets.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from bot.clock import FakeClock
from bot.config import Settings, load_settings
from storage import migrate
from storage.db import Database
from storage.models import Base

PG_ADMIN_URL = os.environ.get("FRONTDOOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_required() -> bool:
    return os.environ.get("FRONTDOOR_REQUIRE_PG") == "1"


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, migrated to head; dropped at the end."""
    name = f"frontdoor_test_{uuid.uuid4().hex[:10]}"

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if _pg_required():
            pytest.fail(f"PostgreSQL required (FRONTDOOR_REQUIRE_PG=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    migrate.upgrade(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/frontdoor.db"
        migrate.upgrade(url)
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    if not database.is_sqlite:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with database.write() as s:
            await s.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(db_url) -> Settings:
    return load_settings(path=os.devnull, env={"FRONTDOOR_DATABASE_URL": db_url})
