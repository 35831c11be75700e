"""Behind nginx, the client is who nginx says it is — only when nginx is trusted (server.trusted_proxies): the
console's audit entries name the operator's address, and /metrics' allow-list judges the scraper, not nginx."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select

from storage.models import AuditEntry
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator

CLIENT = "203.0.113.7"


async def _sign_in_from(h, forwarded_for: str) -> str | None:
    """Signs in with X-Forwarded-For set, as nginx would send it; the address the audit log recorded."""
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.http.close()
        staff.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"X-Forwarded-For": forwarded_for}
        )
        status, _ = await staff.login("张科员")
        assert status == 200
    async with h.db.read() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.operator == "张科员").order_by(AuditEntry.id.desc()))
    return entry.ip


async def test_a_trusted_proxy_names_the_operators_address_in_the_audit_log(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_SERVER_TRUSTED_PROXIES="127.0.0.1/32") as h:
        # nginx appends the address it saw; what the client wrote before it is not believed.
        assert await _sign_in_from(h, f"10.9.9.9, {CLIENT}") == CLIENT


async def test_without_trusted_proxies_the_header_is_not_believed(db_url, clock):
    async with start_harness(db_url, clock) as h:
        assert await _sign_in_from(h, CLIENT) == "127.0.0.1"


async def test_metrics_judge_the_scraper_behind_a_trusted_proxy(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_SERVER_TRUSTED_PROXIES="127.0.0.1/32") as h:
        async with h.http.get(h.url + "/metrics", headers={"X-Forwarded-For": CLIENT}) as resp:
            assert resp.status == 403  # from the internet, through nginx
        async with h.http.get(h.url + "/metrics", headers={"X-Forwarded-For": "10.20.30.40"}) as resp:
            assert resp.status == 200  # the office's Prometheus
        async with h.http.get(h.url + "/metrics", headers={"X-Forwarded-For": "not-an-address"}) as resp:
            assert resp.status == 200  # garbage names nobody: the peer (loopback) is the client
