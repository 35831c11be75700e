"""/open311/v2: Open311 GeoReport v2, read only — services.json, requests.json, requests/<id>.json.

A service is a complaint category (its code: bot/services/open311.py); a request is a case, its
service_request_id the case number. status is "open" for every open status of the lifecycle and "closed" for
closed, refused, merged and withdrawn; status_notes is the latest note the resident was told (the reply, the
reason of a refusal …). Times are ISO 8601 with the office's offset. Phone numbers and openids are never in an
answer. Only the JSON format is offered. The token rules are the API's (bot/api/auth.py): a unit token sees its
unit's requests only, a grid worker's none.

requests.json takes GeoReport's filters: service_request_id (a comma list, overriding the others),
service_code, start_date, end_date (ISO 8601; without them the last 90 days; a range spans 90 days at most) and
status (open, closed); it answers at most 1,000 requests, the newest first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from bot.api import keys
from bot.api.auth import audit, fail, operator_of, reply
from bot.api.checks import sane
from bot.console import roles
from bot.services import open311

MAX_SPAN = timedelta(days=90)
MAX_ID_LENGTH = 32


def _json_only(request: web.Request) -> None:
    fmt = request.match_info["format"].lower()
    if fmt == "xml":
        raise fail(request, 400, "format", "open311.xml_not_offered")
    if fmt != "json":
        raise fail(request, 400, "format", "open311.bad_format", format=fmt)


async def _scope(request: web.Request, target: str | None = None) -> str | None:
    """The unit a token is limited to (None: every case); a 403 for a token that sees no cases."""
    operator = operator_of(request)
    if not roles.sees_cases(operator):
        await audit(request, "open311", outcome="refused", target=target)
        raise fail(request, 403, "forbidden", "forbidden")
    return operator.unit if operator.role == "unit" else None


async def services(request: web.Request) -> web.Response:
    _json_only(request)
    app = request.app
    return reply(
        [
            {
                "service_code": s.code,
                "service_name": s.name,
                "description": s.description,
                "metadata": False,
                "type": "realtime",
                "keywords": ",".join(s.keywords),
                "group": s.group,
            }
            for s in open311.catalog(app[keys.SETTINGS], app[keys.TEXTS])
        ]
    )


def _moment(request: web.Request, name: str) -> datetime | None:
    text = (request.query.get(name) or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(request, 400, "invalid_parameter", "open311.bad_date", name=name) from None
    if not sane(moment):
        raise fail(request, 400, "invalid_parameter", "open311.bad_date", name=name)
    if moment.tzinfo is None:  # a local time of the office
        moment = moment.replace(tzinfo=request.app[keys.SETTINGS].tz)
    return moment


def _query(request: web.Request) -> open311.Query:
    q = request.query
    numbers = tuple(
        dict.fromkeys(n.strip().upper() for n in (q.get("service_request_id") or "").split(",") if n.strip())
    )
    if len(numbers) > open311.MOST_REQUESTS or any(len(n) > MAX_ID_LENGTH for n in numbers):
        raise fail(request, 400, "invalid_parameter", "open311.bad_ids", most=open311.MOST_REQUESTS)
    if numbers:
        return open311.Query(numbers=numbers)
    category = None
    if code := (q.get("service_code") or "").strip():
        category = open311.category_of(request.app[keys.SETTINGS], code)
        if category is None:
            raise fail(request, 400, "invalid_parameter", "open311.bad_service_code", code=code)
    states = {s.strip().lower() for s in (q.get("status") or "").split(",") if s.strip()}
    if not states <= set(open311.STATES):
        raise fail(request, 400, "invalid_parameter", "open311.bad_status")
    start, end = _moment(request, "start_date"), _moment(request, "end_date")
    if end is None:
        end = request.app[keys.CLOCK].now() if start is None else start + MAX_SPAN
    if start is None:
        start = end - MAX_SPAN
    if start > end:
        raise fail(request, 400, "invalid_parameter", "open311.bad_range")
    if end - start > MAX_SPAN:
        raise fail(request, 400, "invalid_parameter", "open311.too_long", days=MAX_SPAN.days)
    state = next(iter(states)) if len(states) == 1 else None
    return open311.Query(category=category, start=start, end=end, state=state)


def _request_json(request: web.Request, r: open311.ServiceRequest) -> dict:
    tz = request.app[keys.SETTINGS].tz
    t = lambda moment: moment.astimezone(tz).isoformat(timespec="seconds") if moment else None  # noqa: E731
    return {
        "service_request_id": r.number,
        "status": r.state,
        "status_notes": r.status_notes,
        "service_name": r.category,
        "service_code": open311.service_code(r.category),
        "description": r.description,
        "agency_responsible": r.lead_unit,
        "requested_datetime": t(r.requested_at),
        "updated_datetime": t(r.updated_at),
        "expected_datetime": t(r.expected_at),
        "address": r.address,
        "lat": r.latitude,
        "long": r.longitude,
    }


async def _found(request: web.Request, query: open311.Query, scope: str | None) -> list[open311.ServiceRequest]:
    mark = request.app[keys.TEXTS]("privacy.phone_hidden")
    async with request.app[keys.STORE].read() as tx:
        return await open311.requests(tx, query, unit_scope=scope, phone_mark=mark)


async def requests_list(request: web.Request) -> web.Response:
    _json_only(request)
    scope = await _scope(request)
    found = await _found(request, _query(request), scope)
    return reply([_request_json(request, r) for r in found])


async def request_one(request: web.Request) -> web.Response:
    _json_only(request)
    number = request.match_info["id"].strip().upper()
    scope = await _scope(request, number)
    found = (
        await _found(request, open311.Query(numbers=(number,), limit=1), scope) if len(number) <= MAX_ID_LENGTH else []
    )
    if not found:
        raise fail(request, 404, "not_found", "open311.not_found", id=number)
    return reply([_request_json(request, found[0])])
