"""/healthz says the process is alive; /readyz that it can serve: the database answers and its schema is at
this code's migration head — so a load balancer sends WeChat's pushes only to instances that can handle them."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from bot import app as app_module
from storage import migrate
from tests.conftest import free_port, make_settings, start_harness


async def test_ready_when_the_database_is_current(harness):
    async with harness.http.get(harness.url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_not_ready_while_a_migration_is_pending(tmp_path, clock):
    url = f"sqlite+aiosqlite:///{tmp_path}/behind.db"
    await asyncio.to_thread(migrate.upgrade, url)
    await asyncio.to_thread(migrate.downgrade, url, "0018")
    async with start_harness(url, clock, fresh=False) as h:
        async with h.http.get(h.url + "/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503
        assert body["migrations"] == {"database": ["0018"], "code": sorted(migrate.heads())}
        async with h.http.get(h.url + "/healthz") as resp:
            assert resp.status == 200  # alive all the same: a restart would not help, an upgrade would


async def test_not_ready_when_the_database_is_unreachable(clock, http):
    port = free_port()
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/frontdoor_nowhere", port)
    server = TestServer(app_module.build_app(settings, clock=clock, run_scheduler=False), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503 and body["status"] == "unavailable" and "database" in body
    finally:
        await server.close()
