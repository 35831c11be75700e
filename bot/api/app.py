"""The API's two sub-applications, mounted by bot/app.py: /api/v1/ (frontdoor's own JSON) and /open311/v2/
(Open311 GeoReport v2). One table of routes; each sub-application has the same two middlewares — every answer
JSON (bot/api/auth.py `errors`), no request without a live token (`guard`)."""

from __future__ import annotations

from aiohttp import web

from bot.api import auth, keys, open311, v1
from bot.clock import Clock
from bot.config import Settings
from bot.texts import Texts

V1_PREFIX = "/api/v1"
OPEN311_PREFIX = "/open311/v2"


def routes() -> dict[str, list[web.AbstractRouteDef]]:
    """Every route of the API, by the dialect (sub-application) that serves it."""
    return {
        "v1": [
            web.get("/cases", v1.list_cases, name="cases"),
            web.get("/cases/{number}", v1.show_case, name="case"),
            web.post("/cases/{number}/actions/{action}", v1.act, name="act"),
            web.get("/categories", v1.categories, name="categories"),
        ],
        "open311": [
            web.get("/services.{format:[A-Za-z0-9]+}", open311.services, name="services"),
            web.get("/requests.{format:[A-Za-z0-9]+}", open311.requests_list, name="requests"),
            web.get("/requests/{id:[^/.]+}.{format:[A-Za-z0-9]+}", open311.request_one, name="request"),
        ],
    }


def _build(dialect: str, *, store, settings: Settings, texts: Texts, clock: Clock) -> web.Application:
    app = web.Application(middlewares=[auth.errors, auth.guard])
    app[keys.STORE], app[keys.SETTINGS], app[keys.TEXTS], app[keys.CLOCK] = store, settings, texts, clock
    app[keys.DIALECT] = dialect
    app.add_routes(routes()[dialect])
    return app


def build_v1(*, store, settings: Settings, texts: Texts, clock: Clock) -> web.Application:
    return _build("v1", store=store, settings=settings, texts=texts, clock=clock)


def build_open311(*, store, settings: Settings, texts: Texts, clock: Clock) -> web.Application:
    return _build("open311", store=store, settings=settings, texts=texts, clock=clock)
