"""/api/v1: the inbox, a case's file and the case actions as JSON, for the platforms of other city offices.

The same services and the same rules as the console (bot/console/cases.py is the model): the token's role says
which actions it may take (bot/console/roles.py); a unit token sees only its unit's cases — any other case is
"not found" to it, so case numbers do not leak; phone numbers are masked for roles that may not see them
(and then also in free text); every action runs in one write transaction with its audit line.

Times are ISO 8601 in the office's time zone (settings [server] timezone), with its offset.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from aiohttp import web

from bot.api import keys
from bot.api.auth import ApiError, audit, fail, operator_of, reply
from bot.api.checks import row_id, sane, usable
from bot.console import actions, roles
from bot.remote import client_address
from bot.services import areas, inbox, open311, operators, privacy
from bot.services.operators import Operator

# The fields an action's body may carry: the names of the console's forms (bot/console/actions.py).
FIELDS = ("reason", "unit", "co_units", "text", "into", "days", "tier", "urgency", "units", "note")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MAX_QUERY = 80


def _time(request: web.Request, moment: datetime | None) -> str | None:
    return moment.astimezone(request.app[keys.SETTINGS].tz).isoformat(timespec="seconds") if moment else None


# ---- the inbox ---------------------------------------------------------------------------------------------------


def _filters(request: web.Request) -> tuple[inbox.Filters, str, int, str]:
    """The query's filters, cursor, page size and area code — or a 400 naming the parameter that is wrong."""
    q, settings = request.query, request.app[keys.SETTINGS]
    view = q.get("view") or "todo"
    if view not in inbox.VIEWS and view not in inbox.STATUSES:
        raise fail(request, 400, "invalid_parameter", "bad_view", views=", ".join((*inbox.VIEWS, *inbox.STATUSES)))
    category = q.get("category") or None
    if category is not None and category not in settings.complaint.categories:
        raise fail(request, 400, "invalid_parameter", "bad_category", category=category)
    deadline = q.get("deadline") or None
    if deadline is not None and deadline not in inbox.DEADLINE_STATES:
        raise fail(request, 400, "invalid_parameter", "bad_deadline", states=", ".join(inbox.DEADLINE_STATES))
    text = (q.get("q") or "").strip()
    if len(text) > MAX_QUERY:
        raise fail(request, 400, "invalid_parameter", "bad_q", max=MAX_QUERY)
    unit = (q.get("unit") or "").strip() or None
    if unit is not None and len(unit) > MAX_QUERY:
        raise fail(request, 400, "invalid_parameter", "bad_unit", max=MAX_QUERY)
    repeat = q.get("repeat", "")
    if repeat not in ("", "0", "1", "false", "true"):
        raise fail(request, 400, "invalid_parameter", "bad_repeat")
    limit_text = q.get("limit") or str(DEFAULT_LIMIT)
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise fail(request, 400, "invalid_parameter", "bad_limit", max=MAX_LIMIT)
    after = q.get("after") or ""
    if after and not _cursor_ok(after):
        raise fail(request, 400, "invalid_parameter", "bad_cursor")
    grid = q.get("grid") or ""
    if grid and not areas.CODE.fullmatch(grid):
        raise fail(request, 400, "invalid_parameter", "bad_grid")
    filters = inbox.Filters(
        view=view, category=category, unit=unit, deadline=deadline, q=text or None, repeat=repeat in ("1", "true")
    )
    return filters, after, int(limit_text), grid


def _cursor_ok(after: str) -> bool:
    """What bot.services.inbox.page hands out as next_after: <ISO time>_<id>. (It would quietly start again
    from the first page on anything else; a client paging through must hear that its cursor is wrong.)"""
    key, _, last_id = after.rpartition("_")
    if not row_id(last_id):
        return False
    try:
        moment = datetime.fromisoformat(key)
    except ValueError:
        return False
    return moment.tzinfo is not None and sane(moment)


def _row(request: web.Request, row: inbox.Row, codes: dict[int, str]) -> dict:
    return {
        "number": row.number,
        "status": row.status,
        "category": row.category,
        "place": row.place,
        "summary": row.summary,
        "lead_unit": row.lead_unit,
        "created_at": _time(request, row.created_at),
        "due_at": _time(request, row.due_at),
        "deadline_state": row.deadline_state,
        "possible_repeat": row.repeat,
        "grid": codes.get(row.grid_id) if row.grid_id is not None else None,
    }


async def list_cases(request: web.Request) -> web.Response:
    operator = operator_of(request)
    if not roles.sees_cases(operator):
        await audit(request, "inbox", outcome="refused")
        raise fail(request, 403, "forbidden", "forbidden")
    filters, after, limit, grid = _filters(request)
    scope = operator.unit if operator.role == "unit" else None
    async with request.app[keys.STORE].read() as tx:
        tree = None
        if grid:
            tree = await areas.all_areas(tx)
            area = next((a for a in tree if a.code == grid), None)
            if area is None:
                raise fail(request, 400, "invalid_parameter", "unknown_grid", grid=grid)
            filters = dataclasses.replace(filters, area=area.id)
        mark = None if roles.sees_phone(operator) else request.app[keys.TEXTS]("privacy.phone_hidden")
        found = await inbox.page(tx, filters, unit_scope=scope, after=after, limit=limit, phone_mark=mark, tree=tree)
        codes = await _grid_codes(tx, sorted({r.grid_id for r in found.rows if r.grid_id is not None}))
    return reply({"cases": [_row(request, r, codes) for r in found.rows], "next": found.next_after or None})


async def _grid_codes(tx, ids: list[int]) -> dict[int, str]:
    """The codes of these grids only: a page's few, not the whole tree on every request."""
    if not ids:
        return {}
    condition, params = inbox.ids_in(tx, "id", ids, "a")
    return {r["id"]: r["code"] for r in await tx.all(f"SELECT id, code FROM areas WHERE {condition}", **params)}


# ---- one case ----------------------------------------------------------------------------------------------------


async def visible_case(request: web.Request, number: str) -> inbox.CaseFile:
    """The case if the token may see it. A case of another unit is as absent as one that does not exist."""
    operator = operator_of(request)
    if not roles.sees_cases(operator):
        await audit(request, "view_case", outcome="refused", target=number)
        raise fail(request, 403, "forbidden", "forbidden")
    async with request.app[keys.STORE].read() as tx:
        case = await inbox.case_file(tx, number.strip().upper())
    if case is not None and not roles.sees_case(operator, case.lead_unit, case.co_units):
        await audit(request, "view_case", outcome="refused", target=number)
        case = None
    if case is None:
        raise fail(request, 404, "not_found", "case_not_found", number=number)
    return case


def case_json(request: web.Request, case: inbox.CaseFile, operator: Operator) -> dict:
    """A case's whole file as this operator may read it. No openid: it names a WeChat account, not a case."""
    texts = request.app[keys.TEXTS]
    if roles.sees_phone(operator):
        phone, free = case.contact_phone, (lambda text: text)
    else:
        mark = texts("privacy.phone_hidden")
        phone = roles.mask_phone(case.contact_phone) or None
        free = lambda text: privacy.hide_phones(text, mark=mark, known=case.contact_phone)  # noqa: E731
    t = lambda moment: _time(request, moment)  # noqa: E731
    return {
        "number": case.number,
        "status": case.status,
        "category": case.category,
        "service_code": open311.service_code(case.category),
        "tier": case.tier,
        "lead_unit": case.lead_unit,
        "co_units": case.co_units,
        "place": free(case.place),
        "latitude": case.latitude,
        "longitude": case.longitude,
        "description": free(case.description),
        "contact_phone": phone,
        "links": case.links,
        "created_at": t(case.created_at),
        "accepted_at": t(case.accepted_at),
        "closed_at": t(case.closed_at),
        "reply_text": free(case.reply_text),
        "merged_into": case.merged_into,
        "rating": case.rating,
        "rating_comment": free(case.rating_comment),
        "deadlines": {
            "due_at": t(case.due_at),
            "state": case.deadline_state,
            "accept_due_at": t(case.accept_due_at),
            "handle_due_at": t(case.handle_due_at),
            "extended_at": t(case.extended_at),
            "escalated_at": t(case.escalated_at),
        },
        "ledger": [
            {
                "at": t(e.at),
                "actor": e.actor,
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "note": free(e.note),
            }
            for e in case.ledger
        ],
        "summons": [
            {
                "unit": s.unit,
                "urgency": s.urgency,
                "due_at": t(s.due_at),
                "status": s.status,
                "late": s.late,
                "checked_in_at": t(s.checked_in_at),
            }
            for s in case.summons
        ],
        "related": case.related,
    }


async def show_case(request: web.Request) -> web.Response:
    case = await visible_case(request, request.match_info["number"])
    return reply({"case": case_json(request, case, operator_of(request))})


# ---- actions -----------------------------------------------------------------------------------------------------


async def _fields(request: web.Request) -> dict[str, str]:
    """The body: a JSON object of string fields the actions know (an empty body is no fields)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise fail(request, 400, "invalid_body", "bad_json") from None
    if not isinstance(body, dict):
        raise fail(request, 400, "invalid_body", "bad_json")
    fields = {}
    for name, value in body.items():
        if name not in FIELDS:
            raise fail(request, 400, "invalid_field", "unknown_field", field=name, fields=", ".join(FIELDS))
        if not isinstance(value, str):
            raise fail(request, 400, "invalid_field", "not_a_string", field=name)
        if not usable(value):
            raise fail(request, 400, "invalid_field", "not_text")
        fields[name] = value.strip()
    return fields


def _detail(fields: dict[str, str]) -> str | None:
    """What the audit log keeps of a body: which fields were given, and the short ones in full."""
    kept = {k: (v if len(v) <= 80 else v[:79] + "…") for k, v in fields.items() if v}
    return "; ".join(f"{k}={v}" for k, v in kept.items()) or None


async def act(request: web.Request) -> web.Response:
    app = request.app
    texts, clock, settings = app[keys.TEXTS], app[keys.CLOCK], app[keys.SETTINGS]
    action, number = request.match_info["action"], request.match_info["number"]
    if action not in roles.CASE_ACTIONS:
        raise fail(request, 404, "not_found", "unknown_action", action=action, actions=", ".join(roles.CASE_ACTIONS))
    case = await visible_case(request, number)
    operator = operator_of(request)
    if not roles.may(operator, action):
        await audit(request, action, outcome="refused", target=case.number)
        raise fail(request, 403, "forbidden", "forbidden")
    try:
        fields = await _fields(request)
    except ApiError as exc:
        await audit(request, action, outcome="failed", target=case.number, detail=exc.message)
        raise
    try:
        async with app[keys.STORE].write() as tx:
            await actions.perform(tx, action, case, operator, fields, clock=clock, settings=settings, texts=texts)
            await operators.audit(
                tx,
                now=clock.now(),
                operator=operator.name,
                action=action,
                target=case.number,
                detail=_detail(fields),
                ip=client_address(request),
            )
    except actions.REFUSALS as exc:
        await audit(request, action, outcome="failed", target=case.number, detail=str(exc))
        if isinstance(exc, actions.FormError):
            raise ApiError(400, "invalid_field", str(exc)) from None
        raise ApiError(409, "refused", str(exc)) from None
    async with app[keys.STORE].read() as tx:
        fresh = await inbox.case_file(tx, case.number)
    return reply({"case": case_json(request, fresh or case, operator)})


# ---- the categories ----------------------------------------------------------------------------------------------


async def categories(request: web.Request) -> web.Response:
    app = request.app
    found = open311.catalog(app[keys.SETTINGS], app[keys.TEXTS])
    return reply(
        {
            "categories": [
                {"name": s.name, "service_code": s.code, "tier": s.tier, "lead_unit": s.lead_unit, "pool": s.pool}
                for s in found
            ]
        }
    )
