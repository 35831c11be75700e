"""Shared fixtures. Every database test runs on SQLite and on the machine's real PostgreSQL.

PostgreSQL: one throwaway database per test session (FRONTDOOR_TEST_PG_URL points at the server's `test`
database by default), tables truncated between tests. If the server is down the PostgreSQL half is skipped
locally but fails under FRONTDOOR_REQUIRE_PG=1, which .ci/run sets.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from bot import app as app_module
from bot.clock import FakeClock
from bot.config import Settings, load_settings
from bot.wechat.fake import FakeWeChat
from bot.wechat.simulator import Resident, WeChatServer
from storage import migrate
from storage.db import Database
from storage.fast import open_store
from storage.models import Base

PG_ADMIN_URL = os.environ.get("FRONTDOOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_required() -> bool:
    return os.environ.get("FRONTDOOR_REQUIRE_PG") == "1"


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def pg_database(prefix: str):
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards. Skips when the server is
    unreachable — or fails, when FRONTDOOR_REQUIRE_PG=1 (CI)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if _pg_required():
            pytest.fail(f"PostgreSQL required (FRONTDOOR_REQUIRE_PG=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, migrated to head."""
    with pg_database("frontdoor_test") as url:
        migrate.upgrade(url)
        yield url


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
    await truncate_all(database)
    yield database
    await database.dispose()


@pytest.fixture
async def store(db, db_url):
    """The hot path's plain-SQL store on the same (already emptied) database."""
    fast = open_store(db_url)
    yield fast
    await fast.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(db_url) -> Settings:
    return load_settings(path=os.devnull, env={"FRONTDOOR_DATABASE_URL": db_url})


# ---- a running frontdoor, and residents talking to it the way WeChat would ---------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Harness:
    app: object
    url: str
    http: aiohttp.ClientSession
    wechat: WeChatServer
    settings: Settings
    clock: FakeClock

    @property
    def webhook(self) -> str:
        return self.url + self.settings.webhook.path

    @property
    def fake_url(self) -> str:
        return self.url + app_module.FAKE_PREFIX

    @property
    def db(self) -> Database:
        return self.app[app_module.DB]

    @property
    def fake(self):
        return self.app[app_module.FAKE]

    def resident(self, openid: str = "o_resident_1") -> Resident:
        return Resident(self.wechat, self.http, self.webhook, openid, self.fake_url)

    async def deliver_outbox(self) -> int:
        return await self.app[app_module.OUTBOX].tick()

    async def pushed(self, openid: str) -> list[str]:
        async with self.http.get(f"{self.fake_url}/sent", params={"touser": openid}) as resp:
            return [item.get("content") for item in await resp.json()]


def make_settings(db_url: str, port: int, **env: str) -> Settings:
    base = {"FRONTDOOR_DATABASE_URL": db_url, "FRONTDOOR_SERVER_PORT": str(port)}
    return load_settings(path=os.devnull, env={**base, **env})


async def truncate_all(db: Database) -> None:
    if not db.is_sqlite:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with db.write() as s:
            await s.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@asynccontextmanager
async def start_harness(db_url: str, clock: FakeClock, *, fresh: bool = True, **env: str):
    """frontdoor on its defaults (fake WeChat API included) on a real port, the scheduler off so tests
    deliver the outbox when they choose. `fresh=False` keeps the data (a restart)."""
    port = free_port()
    settings = make_settings(db_url, port, **env)
    app = app_module.build_app(settings, clock=clock, run_scheduler=False)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    if fresh:
        await truncate_all(app[app_module.DB])
    wx = settings.wechat
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(
                app,
                f"http://127.0.0.1:{port}",
                http,
                WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key),
                settings,
                clock,
            )
    finally:
        await server.close()


@pytest.fixture
async def harness(db_url, clock):
    async with start_harness(db_url, clock) as h:
        yield h


# ---- the fake WeChat API alone, over real HTTP, mounted at /fake-wechat/ as in production ---------------------


@pytest.fixture
def fake(clock) -> FakeWeChat:
    return FakeWeChat.from_settings(Settings(), clock)


@pytest.fixture
def raw_bodies() -> list[bytes]:
    """What actually went over the wire to the fake, before it parsed anything."""
    return []


@pytest.fixture
async def base_url(fake, raw_bodies):
    @web.middleware
    async def capture(request, handler):
        raw_bodies.append(await request.read())
        return await handler(request)

    parent = web.Application(middlewares=[capture])
    parent.add_subapp("/fake-wechat/", fake.app())
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("/fake-wechat"))
    await server.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session
