"""The HTTP side of metrics and logs: a request id on every request, and GET /metrics for Prometheus.

/metrics is this process's counters (bot/metrics.py) followed by figures read from the database at scrape time
(cases by status, the outbox), which every instance reports alike for the whole cluster.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from bot.clock import Clock
from bot.config import MetricsSettings
from bot.logs import REQUEST_ID
from bot.remote import client_address
from bot.services import lifecycle
from storage.fast import Store

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# nginx's $request_id is 32 hex digits; a longer or stranger value (a header anyone can send) is not echoed
# into logs: a fresh id replaces it.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_KEY = web.RequestKey("request_id", str)
# An id made here: random per process (unique across instances and restarts), then counted — a uuid4 per request
# cost the webhook about 1 % of its CPU.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)
# A scrape must not hang on a slow database: without an answer by then the database figures are left out
# (frontdoor_metrics_database_up 0) and the process's own counters still go out.
DB_TIMEOUT_SECONDS = 2.0
# The paths load balancers and Prometheus poll every few seconds: their request lines would drown the rest.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

CASE_STATUSES = tuple(sorted(lifecycle.OPEN | {m.target for m in lifecycle.MOVES.values() if m.target}))


@web.middleware
async def request_id(request: web.Request, handler) -> web.StreamResponse:
    """The id nginx gave this request (X-Request-Id), or a new one, on every log record of its handling and on
    the response. Work the request starts in tasks (intake) copies the id along with the context."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if incoming and _ACCEPTED_ID.fullmatch(incoming) else f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
    request[_REQUEST_ID_KEY] = rid
    token = REQUEST_ID.set(rid)
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.path not in _QUIET_PATHS and log.isEnabledFor(logging.DEBUG):
            # The path only: WeChat's query carries the resident's openid.
            log.debug(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={"duration_ms": round((time.monotonic() - started) * 1000, 1)},
            )
        REQUEST_ID.reset(token)


async def _request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare also sees error pages and streamed responses, which the middleware cannot change.
    rid = request.get(_REQUEST_ID_KEY)
    if rid:
        response.headers[REQUEST_ID_HEADER] = rid


def install_request_ids(app: web.Application) -> None:
    app.middlewares.append(request_id)
    app.on_response_prepare.append(_request_id_header)


class MetricsView:
    def __init__(self, settings: MetricsSettings, store: Store, clock: Clock):
        self.store = store
        self.clock = clock
        self.allowed = [ipaddress.ip_network(cidr.strip()) for cidr in settings.allow_from]

    def _allows(self, remote: str | None) -> bool:
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)

    async def get(self, request: web.Request) -> web.Response:
        # The peer's own address — or, from a trusted proxy, the client it names (bot/remote.py): X-Forwarded-For
        # is anyone's to write. Behind an nginx not listed in server.trusted_proxies that is nginx, which must
        # refuse /metrics from outside itself.
        if not self._allows(client_address(request)):
            return web.Response(status=403, text="metrics: not from this address\n")
        families = await self._database_figures()
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Fixed(families))
        body = generate_latest(REGISTRY) + generate_latest(scrape)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _database_figures(self) -> list[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "frontdoor_metrics_database_up", "1 when the database figures below were read for this scrape."
        )
        try:
            async with asyncio.timeout(DB_TIMEOUT_SECONDS):
                async with self.store.read() as tx:
                    by_status = {r[0]: r[1] for r in await tx.all(_CASES_BY_STATUS)}
                    pending = await tx.one(_OUTBOX_PENDING)
                    oldest = tx.dt(pending[1])
        except Exception as exc:  # slow, unreachable, mid-migration: the scrape still answers
            log.warning("metrics: database figures unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        cases = GaugeMetricFamily(
            "frontdoor_cases", "Cases by status (the whole cluster, read from the database).", labels=["status"]
        )
        for status in sorted({*CASE_STATUSES, *by_status}):
            cases.add_metric([status], by_status.get(status, 0))
        depth = GaugeMetricFamily("frontdoor_outbox_pending", "Outbox rows waiting to be sent (the whole cluster).")
        depth.add_metric([], pending[0])
        age = GaugeMetricFamily(
            "frontdoor_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row, seconds (0: none)."
        )
        age.add_metric([], max((self.clock.now() - oldest).total_seconds(), 0.0) if oldest else 0.0)
        return [up, cases, depth, age]


class _Fixed:
    """A collector of figures gathered before the scrape (the registry's collect() cannot await)."""

    def __init__(self, families: Iterable[GaugeMetricFamily]):
        self.families = list(families)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.families


_CASES_BY_STATUS = "SELECT status, COUNT(*) FROM cases GROUP BY status"
_OUTBOX_PENDING = "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'"


def add_metrics_route(app: web.Application, settings: MetricsSettings, store: Store, clock: Clock) -> None:
    if settings.enabled:
        app.router.add_get("/metrics", MetricsView(settings, store, clock).get)
