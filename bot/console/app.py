"""The console's sub-application, mounted at /console/ by bot/app.py: one table of routes, Jinja2 templates
with autoescape (every resident-supplied string is escaped), the guard and the security headers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.clock import Clock
from bot.config import Settings
from bot.console import auth, canned, cases, files, grids, keys, live, longrun, polls, reports, roles, visits
from bot.console.security import CSRF_FIELD, security_headers
from bot.texts import Texts

HERE = Path(__file__).parent


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(request.app.router[auth.landing(auth.session_of(request).operator.role)].url_for())


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/", home, name="home"),
        web.get("/login", auth.login_form, name="login"),
        web.post("/login", auth.login_submit, name="login_submit"),
        web.post("/logout", auth.logout, name="logout"),
        web.get("/cases", cases.inbox_page, name="inbox"),
        web.get("/cases/{number}", cases.case_page, name="case"),
        # Before the generic action route: closing by 息诉罢访 carries its file (multipart).
        web.post("/cases/{number}/commit_close", longrun.commit_close, name="commit_close"),
        # Before the generic action route: a file attached to the case (multipart; kind agreement|commitment|other).
        web.post("/cases/{number}/files", files.upload, name="case_file_upload"),
        web.post("/cases/{number}/{action}", cases.act, name="act"),
        web.get("/cases/{number}/files/{id:\\d+}", files.download, name="case_file"),
        web.get("/cases/{number}/media/{media_id}", cases.media_file, name="media"),
        web.get("/long-running", longrun.list_page, name="long_running"),
        web.get("/dashboard", reports.dashboard, name="dashboard"),
        web.get("/export.csv", reports.export_csv, name="export_csv"),
        web.get("/export.xlsx", reports.export_xlsx, name="export_xlsx"),
        web.get("/live", live.stream, name="live"),
        web.get("/canned", canned.list_page, name="canned"),
        web.post("/canned", canned.save, name="canned_save"),
        web.post("/canned/{id:\\d+}/delete", canned.delete, name="canned_delete"),
        web.get("/grids", grids.list_page, name="grids"),
        web.post("/grids/add", grids.add, name="grid_add"),
        web.post("/grids/import", grids.import_csv, name="grid_import"),
        web.post("/grids/{id:\\d+}/rename", grids.rename, name="grid_rename"),
        web.post("/grids/{id:\\d+}/remove", grids.remove, name="grid_remove"),
        web.get("/grids/{code}/qr", grids.qr_poster, name="grid_qr"),
        web.get("/polls", polls.list_page, name="polls"),
        web.get("/polls/new", polls.new_page, name="poll_new"),
        web.post("/polls/new", polls.create, name="poll_create"),
        web.get("/polls/{id:\\d+}", polls.poll_page, name="poll"),
        web.post("/polls/{id:\\d+}/close", polls.close, name="poll_close"),
        web.post("/polls/{id:\\d+}/door", polls.door_vote, name="poll_door"),
        web.post("/polls/{id:\\d+}/case", polls.link_case, name="poll_case"),
        web.get("/polls/{id:\\d+}/export.csv", polls.export_csv, name="poll_export"),
        web.get("/visits", visits.list_page, name="visits"),
        web.get("/visits/new", visits.new_page, name="visit_new"),
        web.post("/visits/new", visits.create, name="visit_create"),
        web.post("/visits/record", visits.record, name="visit_record"),
        web.get("/visits/{id:\\d+}", visits.visit_page, name="visit"),
        web.post("/visits/{id:\\d+}/complete", visits.complete, name="visit_complete"),
        web.post("/visits/{id:\\d+}/cancel", visits.cancel, name="visit_cancel"),
        web.static("/static", HERE / "static", name="static", append_version=True),
    ]


def build(*, store, settings: Settings, texts: Texts, clock: Clock) -> web.Application:
    app = web.Application(middlewares=[security_headers, auth.guard])
    app[keys.STORE], app[keys.SETTINGS], app[keys.TEXTS], app[keys.CLOCK] = store, settings, texts, clock
    app.add_routes(routes())
    feed = app[live.FEED] = live.LiveFeed(app)

    async def stop_streams(_app: web.Application) -> None:
        feed.stop_streams()

    async def stop_feed(_app: web.Application) -> None:
        await feed.close()

    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(stop_feed)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    tz = settings.tz
    env.globals.update(t=texts, csrf_field=CSRF_FIELD, roles=roles)
    env.filters["local"] = lambda moment, fmt="%Y-%m-%d %H:%M": _local(moment, tz, fmt)
    env.filters["span"] = lambda delta: _span(texts, delta)
    return app


def _local(moment: datetime | None, tz, fmt: str) -> str:
    return moment.astimezone(tz).strftime(fmt) if moment else ""


def _span(texts: Texts, delta: timedelta) -> str:
    """3 天 / 5 小时 / 12 分钟: the largest unit that is at least one."""
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return texts("console.case.days", days=seconds // 86400)
    if seconds >= 3600:
        return texts("console.case.hours", hours=seconds // 3600)
    return texts("console.case.minutes", minutes=max(1, seconds // 60))
