"""Builds the aiohttp application. Cleanup contexts own the database, the HTTP session and the scheduler."""

from __future__ import annotations

import logging
import os
import socket

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import remote
from bot.api import app as api
from bot.clock import Clock
from bot.config import Settings
from bot.console import app as console
from bot.intake import Intake
from bot.media import MediaWorker
from bot.metrics import watch_scheduler
from bot.notify import OutboxWorker
from bot.observability import add_metrics_route, install_request_ids
from bot.router import route
from bot.services.poll_jobs import PollWorker
from bot.texts import Texts
from bot.wechat.api import DatabaseTokenStore, WeChatAPI
from bot.wechat.fake import FakeWeChat
from bot.wechat.webhook import Webhook
from storage import migrate
from storage.db import Database
from storage.fast import open_store

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
STORE = web.AppKey("store", object)
INTAKE = web.AppKey("intake", Intake)
API = web.AppKey("api", WeChatAPI)
FAKE = web.AppKey("fake", FakeWeChat)
OUTBOX = web.AppKey("outbox", OutboxWorker)
MEDIA = web.AppKey("media", MediaWorker)
POLLS = web.AppKey("polls", PollWorker)

FAKE_PREFIX = "/fake-wechat"
CONSOLE_PREFIX = "/console"


def local_base_url(settings: Settings) -> str:
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.port}"


def api_base_url(settings: Settings) -> str:
    if settings.wechat.fake_api:
        return local_base_url(settings) + FAKE_PREFIX
    return settings.wechat.api_base_url


def qrcode_image_base(settings: Settings, api_base: str | None = None) -> str:
    """Where QR images are fetched by ticket: WeChat serves them from another host than the API, the fake beside
    its API (under `api_base` when the API is pointed elsewhere)."""
    if settings.wechat.fake_api:
        return (api_base or api_base_url(settings)).rstrip("/") + "/cgi-bin/showqrcode"
    return settings.wechat.qrcode_image_url


async def healthz(_request: web.Request) -> web.Response:
    """The process is alive (it answers); says nothing of the database — that is /readyz."""
    return web.json_response({"status": "ok"})


READY_HEADS = web.AppKey("ready_heads", frozenset)


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers and its schema is at this code's migration head. 503 otherwise,
    with the reason, so a load balancer stops sending WeChat's pushes to an instance that would fail them."""
    try:
        async with request.app[STORE].read() as tx:
            current = {row[0] for row in await tx.all("SELECT version_num FROM alembic_version")}
    except Exception as exc:  # unreachable, refused, no such table: all mean "not ready"
        return web.json_response({"status": "unavailable", "database": type(exc).__name__}, status=503)
    wanted = request.app[READY_HEADS]
    if current != wanted:
        body = {"status": "unavailable", "migrations": {"database": sorted(current), "code": sorted(wanted)}}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ok"})


def build_app(
    settings: Settings, *, clock: Clock | None = None, run_scheduler: bool = True, api_base: str | None = None
) -> web.Application:
    """The whole server. `api_base` overrides where the outbound client points (tests)."""
    clock = clock or Clock()
    texts = Texts(settings.texts.override_file)
    db = Database(
        settings.database.url,
        pool_size=settings.database.pool_size,
        sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
    )
    store = open_store(
        settings.database.url,
        pool_size=settings.database.pool_size,
        sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
    )
    intake = Intake(store, route, clock=clock, settings=settings, texts=texts)
    app = web.Application()
    app[SETTINGS], app[DB], app[STORE], app[INTAKE] = settings, db, store, intake
    # Polls' distribution, reminders and closing: durable rows, fired by the scheduler's tick.
    app[POLLS] = PollWorker(store, clock, settings, texts)
    app[READY_HEADS] = frozenset(migrate.heads())
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), *Webhook(settings, intake).routes()])
    # Every log record of a request carries its id (nginx's X-Request-Id); /metrics for Prometheus.
    install_request_ids(app)
    # Behind nginx: the client's address for audit entries and /metrics (server.trusted_proxies).
    remote.install(app, settings.server.trusted_proxies)
    add_metrics_route(app, settings.metrics, store, clock)
    app.add_subapp(CONSOLE_PREFIX + "/", console.build(store=store, settings=settings, texts=texts, clock=clock))
    # The JSON API and Open311 GeoReport v2 for other city platforms, with API tokens (bot/api/).
    parts = {"store": store, "settings": settings, "texts": texts, "clock": clock}
    app.add_subapp(api.V1_PREFIX + "/", api.build_v1(**parts))
    app.add_subapp(api.OPEN311_PREFIX + "/", api.build_open311(**parts))
    if settings.wechat.fake_api:
        fake = FakeWeChat.from_settings(settings, clock)
        app[FAKE] = fake
        app.add_subapp(FAKE_PREFIX + "/", fake.app())

    async def database(app: web.Application):
        yield
        await intake.drain()
        await store.close()
        await db.dispose()

    async def wechat_client(app: web.Application):
        async with aiohttp.ClientSession() as http:
            owner = f"{socket.gethostname()}:{os.getpid()}"
            # Every instance reads the one shared access token from the database (bot/wechat/api.py).
            app[API] = WeChatAPI.from_settings(
                http,
                settings.wechat,
                clock,
                base_url=api_base or api_base_url(settings),
                qrcode_image_url=qrcode_image_base(settings, api_base),
                token_store=DatabaseTokenStore(db, settings.wechat.app_id),
                owner=owner,
                token_lease_seconds=settings.push.token_lease_seconds,
            )
            worst_send = settings.wechat.api_timeout_seconds * (settings.wechat.api_max_retries + 1) * 2
            app[OUTBOX] = OutboxWorker(
                store,
                app[API],
                clock,
                settings.outbox,
                owner,
                push=settings.push,
                texts=texts,
                max_send_seconds=worst_send,
                tz=settings.tz,
            )
            # Photos and voice of cases, fetched from WeChat before they expire (bot/media.py).
            app[MEDIA] = MediaWorker(store, app[API], clock, settings.media, owner)
            yield

    async def scheduler(app: web.Application):
        # APScheduler is only the clock here: durable work lives in database rows (see bot/notify.py).
        sched = AsyncIOScheduler()
        sched.add_job(
            app[OUTBOX].tick,
            "interval",
            seconds=settings.outbox.tick_seconds,
            max_instances=1,
            coalesce=True,
            id="outbox",
        )
        sched.add_job(
            app[MEDIA].tick, "interval", seconds=settings.media.tick_seconds, max_instances=1, coalesce=True, id="media"
        )
        # Deadline reminders: durable rows in the database, claimed with a lease (bot/services/deadlines.py).
        from bot.services.deadlines import DeadlineWorker

        reminders = DeadlineWorker(store, clock, settings)
        sched.add_job(
            reminders.tick,
            "interval",
            seconds=settings.deadlines.tick_seconds,
            max_instances=1,
            coalesce=True,
            id="deadlines",
        )
        sched.add_job(
            app[POLLS].tick, "interval", seconds=settings.polls.tick_seconds, max_instances=1, coalesce=True, id="polls"
        )
        sched.add_job(intake.purge, "interval", hours=1, max_instances=1, coalesce=True, id="housekeeping")
        watch_scheduler(sched)
        sched.start()
        yield
        sched.shutdown(wait=False)

    app.cleanup_ctx.extend([database, wechat_client])
    if run_scheduler:
        app.cleanup_ctx.append(scheduler)
    return app
