"""Visits (巡回接访、上门服务) in the console: the list by period, planning a visit (date, team — the 6+N units
or others — and the cases to take along), recording one done, and a visit's page with its complete and cancel
forms. Who may do which is checked here on the server for every page and form (roles.py): PLAN_VISITS plan,
complete and cancel; RECORD_VISITS record; a unit handler only with cases all of their unit, and sees only
visits with a case of theirs; a grid worker's account sees the visits it recorded; the viewer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

from aiohttp import web

from bot.api.checks import row_id, sane, usable
from bot.console import keys, roles
from bot.console.auth import audit, not_found, refused, see_other, session_of
from bot.console.pages import render
from bot.services import areas, gridworkers, privacy, visits
from bot.services.operators import Operator
from storage.fast import Tx

DONE = frozenset({"planned", "recorded", "completed", "cancelled"})
DEFAULT_DAYS = 90


class FormError(Exception):
    """A form the console could not read; the message says why."""


def _operator(request: web.Request) -> Operator:
    return session_of(request).operator


@dataclass(frozen=True)
class Scope:
    operator: Operator
    names: tuple[str, ...]  # what a grid worker's visits are recorded under: their account's and worker's name

    def sees(self, visit: visits.Visit) -> bool:
        role = self.operator.role
        if role in roles.SEE_ALL_VISITS:
            return True
        if role == "unit":
            return any(self._theirs(c) for c in visit.cases)
        if role == "gridworker":
            return visit.recorded_by in self.names
        return False

    def _theirs(self, case: visits.VisitCase) -> bool:
        return roles.sees_case(self.operator, case.lead_unit, case.co_units)

    def records(self, cases: list[visits.VisitCase]) -> bool:
        """Recording (or completing) a visit to these cases: a unit handler only with cases all of their unit."""
        if self.operator.role not in roles.RECORD_VISITS:
            return False
        if self.operator.role == "unit":
            return bool(cases) and all(self._theirs(c) for c in cases)
        return True

    @property
    def plans(self) -> bool:
        return self.operator.role in roles.PLAN_VISITS

    def may_complete(self, visit: visits.Visit) -> bool:
        return self.plans or (self.operator.role == "unit" and self.records(visit.cases))

    def completes(self, visit: visits.Visit) -> bool:
        return visit.status == "planned" and self.may_complete(visit)

    @property
    def by(self) -> str:
        return self.names[-1]


async def _scope(tx: Tx, operator: Operator) -> Scope:
    names = (operator.name,)
    if operator.role == "gridworker":
        worker = await gridworkers.by_operator(tx, operator.name)
        if worker is not None and worker.active:
            names = (operator.name, worker.name)
    return Scope(operator, names)


def _shown(operator: Operator, texts, visit: visits.Visit) -> visits.Visit:
    """For a role that may not see phone numbers, none in what was typed about the visit."""
    if roles.sees_phone(operator):
        return visit
    mark = texts("privacy.phone_hidden")
    return replace(
        visit,
        met=privacy.hide_phones(visit.met, mark=mark),
        agreed=privacy.hide_phones(visit.agreed, mark=mark),
        place_label=privacy.hide_phones(visit.place_label, mark=mark),
    )


def _day(text: str) -> date | None:
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if 2000 <= value.year <= 2100 else None


# ---- the list ---------------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    operator = _operator(request)
    if operator.role not in roles.SEE_VISITS:
        return await refused(request, "visits")
    app = request.app
    tz, texts = app[keys.SETTINGS].tz, app[keys.TEXTS]
    today = app[keys.CLOCK].now().astimezone(tz).date()
    first = _day(request.query.get("from", "")) or today - timedelta(days=DEFAULT_DAYS - 1)
    last = _day(request.query.get("to", "")) or today + timedelta(days=DEFAULT_DAYS)
    error = texts("console.dashboard.bad_order") if first > last else None
    if error:
        first, last = last, first
    status = request.query.get("status") or None
    since = datetime.combine(first, time(), tzinfo=tz)
    until = datetime.combine(last + timedelta(days=1), time(), tzinfo=tz)
    async with app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
        found = await visits.listing(
            tx,
            since=since,
            until=until,
            status=status if status in visits.STATUSES else None,
            unit=operator.unit if operator.role == "unit" else None,
            recorded_by=scope.names if operator.role == "gridworker" else None,
        )
        tree = await areas.all_areas(tx)
    by_id = {a.id: a for a in tree}
    found = [_shown(operator, texts, v) for v in found if scope.sees(v)]
    context = {
        "visits": found,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "status": status if status in visits.STATUSES else "",
        "statuses": visits.STATUSES,
        "grid_path": lambda grid_id: by_id[grid_id].path if grid_id in by_id else "",
        "records": operator.role in roles.RECORD_VISITS,
        "error": error,
    }
    return render(request, "visits.html", context)


# ---- planning and recording -------------------------------------------------------------------------------


def _team_choices(request: web.Request) -> list[str]:
    units = request.app[keys.SETTINGS].routing.table("units").values()
    return list(dict.fromkeys([*visits.STANDING_UNITS, *sorted(set(units))]))


def _fields(form) -> dict:
    one = {
        k: str(form.get(k, ""))
        for k in ("planned_for", "team_other", "cases", "grid", "place", "met", "agreed", "resolved", "resolved_all")
    }
    one["team"] = [str(v) for v in form.getall("team", []) if isinstance(v, str)]
    return one


def _empty() -> dict:
    return {
        "planned_for": "",
        "team_other": "",
        "cases": "",
        "grid": "",
        "place": "",
        "met": "",
        "agreed": "",
        "resolved": "",
        "resolved_all": "",
        "team": [],
    }


async def _new_page(request: web.Request, scope: Scope, fields: dict, *, error=None, which=None, status=200):
    settings, clock = request.app[keys.SETTINGS], request.app[keys.CLOCK]
    async with request.app[keys.STORE].read() as tx:
        tree = await areas.all_areas(tx)
    if not fields.get("planned_for"):
        start = (clock.now() + timedelta(days=1)).astimezone(settings.tz).replace(hour=9, minute=0)
        fields = {**fields, "planned_for": start.strftime("%Y-%m-%dT%H:%M")}
    context = {
        "form": fields,
        "team_choices": _team_choices(request),
        "chosen": set(fields["team"]),
        "grids": [a for a in tree if a.level in ("grid", "community")],
        "plans": scope.plans,
        "error": error,
        "which": which,
    }
    return render(request, "visit_new.html", context, status=status)


async def new_page(request: web.Request) -> web.Response:
    operator = _operator(request)
    if operator.role not in roles.PLAN_VISITS | roles.RECORD_VISITS:
        return await refused(request, "visit_new")
    async with request.app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
    return await _new_page(request, scope, _empty())


def _check(fields: dict, texts) -> None:
    if not all(usable(v) for v in fields.values() if isinstance(v, str)) or not all(usable(t) for t in fields["team"]):
        raise FormError(texts("console.visits.bad_input"))


def _grid(fields: dict, texts) -> int | None:
    raw = fields["grid"].strip()
    if not raw:
        return None
    if not row_id(raw):
        raise FormError(texts("visit.error_no_grid"))
    return int(raw)


def _team(fields: dict) -> list[str]:
    return [*fields["team"], *visits.team_of(fields["team_other"])]


def _when(text: str, tz, texts) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FormError(texts("console.visits.bad_date")) from None
    if not sane(moment):
        raise FormError(texts("console.visits.bad_date"))
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


async def _cases_allowed(request, scope: Scope, numbers: list[str], action: str) -> web.Response | None:
    """The page that says no if this operator may not record a visit to these cases (unknown ones: the service
    says so)."""
    try:
        async with request.app[keys.STORE].read() as tx:
            found = await visits.cases_for(tx, numbers)
    except visits.VisitError:
        found = None
    if found is not None and not scope.records(found):
        return await refused(request, action, ",".join(numbers)[:200])
    if found is None and scope.operator.role == "unit":
        return await refused(request, action, ",".join(numbers)[:200])
    return None


def _to_visit(request: web.Request, visit_id: int, done: str) -> web.Response:
    return see_other(str(request.app.router["visit"].url_for(id=str(visit_id)).with_query(done=done)))


async def create(request: web.Request) -> web.Response:
    """Plan a visit."""
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    operator = _operator(request)
    fields = _fields(await request.post())
    async with app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
    if not scope.plans:
        return await refused(request, "visit_plan")
    try:
        _check(fields, texts)
        planned_for = _when(fields["planned_for"], settings.tz, texts)
        async with app[keys.STORE].write() as tx:
            visit_id = await visits.plan(
                tx,
                cases=visits.numbers_in(fields["cases"]),
                grid_id=_grid(fields, texts),
                planned_for=planned_for,
                team=_team(fields),
                by=scope.by,
                via="console",
                clock=clock,
                texts=texts,
                tz=settings.tz,
                place=fields["place"],
                hotline=settings.complaint.hotline,
            )
    except FormError as exc:
        message = str(exc)
    except visits.VisitError as exc:
        message = exc.text(texts)
    else:
        await audit(request, "visit_plan", target=str(visit_id), detail=fields["cases"][:120] or None)
        return _to_visit(request, visit_id, "planned")
    await audit(request, "visit_plan", outcome="failed", detail=message)
    return await _new_page(request, scope, fields, error=message, which="plan", status=400)


async def record(request: web.Request) -> web.Response:
    """Record a visit done (not planned before)."""
    app = request.app
    texts, clock = app[keys.TEXTS], app[keys.CLOCK]
    operator = _operator(request)
    fields = _fields(await request.post())
    async with app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
    if operator.role not in roles.RECORD_VISITS:
        return await refused(request, "visit_record")
    numbers = visits.numbers_in(fields["cases"])
    denied = await _cases_allowed(request, scope, numbers, "visit_record")
    if denied is not None:
        return denied
    try:
        _check(fields, texts)
        resolved = True if fields["resolved_all"] else visits.numbers_in(fields["resolved"])
        async with app[keys.STORE].write() as tx:
            visit_id = await visits.record(
                tx,
                cases=numbers,
                grid_id=_grid(fields, texts),
                place=visits.Place(fields["place"]),
                met=fields["met"],
                agreed=fields["agreed"],
                photos=[],
                resolved=resolved,
                team=_team(fields),
                by=scope.by,
                via="console",
                now=clock.now(),
                texts=texts,
            )
    except FormError as exc:
        message = str(exc)
    except visits.VisitError as exc:
        message = exc.text(texts)
    else:
        await audit(request, "visit_record", target=str(visit_id), detail=fields["cases"][:120] or None)
        return _to_visit(request, visit_id, "recorded")
    await audit(request, "visit_record", outcome="failed", detail=message)
    return await _new_page(request, scope, fields, error=message, which="record", status=400)


# ---- one visit --------------------------------------------------------------------------------------------


async def _visible(request: web.Request, action: str) -> tuple[Scope, visits.Visit] | web.Response:
    raw = request.match_info["id"]
    operator = _operator(request)
    if operator.role not in roles.SEE_VISITS:
        return await refused(request, action, raw)
    if not row_id(raw):
        return not_found(request)
    async with request.app[keys.STORE].read() as tx:
        visit = await visits.get(tx, int(raw))
        scope = await _scope(tx, operator)
    if visit is None:
        return not_found(request)
    if not scope.sees(visit):
        return await refused(request, action, raw)
    return scope, visit


async def _visit_page(request, scope: Scope, visit: visits.Visit, *, error=None, form=None, status=200):
    app = request.app
    async with app[keys.STORE].read() as tx:
        visit = await visits.get(tx, visit.id) or visit
        grid = await areas.get(tx, visit.grid_id) if visit.grid_id is not None else None
    done = request.query.get("done")
    context = {
        "visit": _shown(scope.operator, app[keys.TEXTS], visit),
        "grid": grid,
        "links": {c.number for c in visit.cases if roles.sees_case(scope.operator, c.lead_unit, c.co_units)},
        "completes": scope.completes(visit),
        "cancels": scope.plans and visit.status == "planned",
        "done": done if done in DONE else None,
        "error": error,
        "form": form or {},
    }
    return render(request, "visit.html", context, status=status)


async def visit_page(request: web.Request) -> web.Response:
    found = await _visible(request, "visit")
    if isinstance(found, web.Response):
        return found
    return await _visit_page(request, *found)


async def complete(request: web.Request) -> web.Response:
    found = await _visible(request, "visit_complete")
    if isinstance(found, web.Response):
        return found
    scope, visit = found
    if not scope.may_complete(visit):
        return await refused(request, "visit_complete", str(visit.id))
    app = request.app
    texts = app[keys.TEXTS]
    form = await request.post()
    fields = {k: str(form.get(k, "")) for k in ("place", "met", "agreed")}
    chosen = [str(v) for v in form.getall("resolved", []) if isinstance(v, str)]
    try:
        if not all(usable(v) for v in [*fields.values(), *chosen]):
            raise FormError(texts("console.visits.bad_input"))
        async with app[keys.STORE].write() as tx:
            await visits.complete(
                tx,
                visit.id,
                place=visits.Place(fields["place"]) if fields["place"].strip() else None,
                met=fields["met"],
                agreed=fields["agreed"],
                photos=[],
                resolved=chosen,
                by=scope.by,
                now=app[keys.CLOCK].now(),
                texts=texts,
            )
    except FormError as exc:
        message, code = str(exc), 400
    except visits.VisitError as exc:
        message, code = exc.text(texts), 409 if exc.key in ("not_planned", "changed") else 400
    else:
        await audit(request, "visit_complete", target=str(visit.id), detail=",".join(chosen) or None)
        return _to_visit(request, visit.id, "completed")
    await audit(request, "visit_complete", outcome="failed", target=str(visit.id), detail=message)
    return await _visit_page(request, scope, visit, error=message, form=fields, status=code)


async def cancel(request: web.Request) -> web.Response:
    found = await _visible(request, "visit_cancel")
    if isinstance(found, web.Response):
        return found
    scope, visit = found
    if not scope.plans:
        return await refused(request, "visit_cancel", str(visit.id))
    app = request.app
    texts, settings = app[keys.TEXTS], app[keys.SETTINGS]
    reason = str((await request.post()).get("reason", ""))
    try:
        if not usable(reason):
            raise FormError(texts("console.visits.bad_input"))
        async with app[keys.STORE].write() as tx:
            await visits.cancel(
                tx,
                visit.id,
                reason=reason,
                by=scope.by,
                clock=app[keys.CLOCK],
                texts=texts,
                tz=settings.tz,
                hotline=settings.complaint.hotline,
            )
    except FormError as exc:
        message, code = str(exc), 400
    except visits.VisitError as exc:
        message, code = exc.text(texts), 409 if exc.key in ("not_planned", "changed") else 400
    else:
        await audit(request, "visit_cancel", target=str(visit.id), detail=reason[:80])
        return _to_visit(request, visit.id, "cancelled")
    await audit(request, "visit_cancel", outcome="failed", target=str(visit.id), detail=message)
    return await _visit_page(request, scope, visit, error=message, form={"reason": reason}, status=code)
