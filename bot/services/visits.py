"""Visits (巡回接访、上门服务): staff and grid workers go to residents. A visit is planned (a date, a team — e.g.
the 6+N units — and the cases to take along) and then done (where, who was met, what was agreed, photos, which
disputes were settled there), or recorded after the fact, or cancelled.

Every case on a visit gets a ledger entry (visit_planned, visited, visit_cancelled); the resident of a case is
told of a planned visit (and of its cancellation) through the outbox, in the transaction of the change. The
figures the office publishes ("85 visits, 260 disputes resolved") come from `figures`: visits done in a period
and the cases marked resolved on them, by the case's lead unit, by street and by grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.clock import Clock
from bot.services import areas, inbox, media
from bot.services.cases import add_ledger
from bot.services.outbox import enqueue_text
from bot.texts import Texts
from storage.fast import Tx, js, unjs

STATUSES = ("planned", "done", "cancelled")
VIA = ("chat", "console")
# The six standing units of 6+N joint visits; others ("N") are added as needed.
STANDING_UNITS = ("检察院", "法院", "公安局", "信访局", "司法局", "综治中心")
MAX_TEXT = 2000
MAX_CASES = 50
MAX_TEAM = 30
MAX_PHOTOS = 20
_NUMBER = re.compile(r"[A-Za-z]{0,8}\d{8}-\d{3,6}")


class VisitError(Exception):
    """A visit that cannot be planned, recorded or changed as asked; `text` says why ([visit] texts)."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values

    def text(self, texts: Texts) -> str:
        return texts(f"visit.error_{self.key}", **self.values)


@dataclass(frozen=True)
class VisitCase:
    case_id: int
    number: str
    resolved: bool
    status: str
    lead_unit: str | None
    co_units: tuple[str, ...]
    openid: str | None = None


@dataclass
class Visit:
    id: int
    status: str
    planned_for: datetime | None
    done_at: datetime | None
    place_label: str | None
    latitude: float | None
    longitude: float | None
    grid_id: int | None
    team: list[str]
    met: str | None
    agreed: str | None
    photo_media_ids: list[str]
    recorded_by: str
    via: str
    created_at: datetime
    cases: list[VisitCase] = field(default_factory=list)

    @property
    def when(self) -> datetime | None:
        return self.done_at or self.planned_for

    @property
    def resolved(self) -> list[VisitCase]:
        return [c for c in self.cases if c.resolved]


@dataclass(frozen=True)
class Place:
    label: str
    lat: float | None = None
    lng: float | None = None


def numbers_in(text: str) -> list[str]:
    """Case numbers in what was typed (XF20261125-0001, several separated by anything), upper case, once each."""
    return list(dict.fromkeys(m.upper() for m in _NUMBER.findall(text or "")))


def team_of(text: str) -> list[str]:
    """A team typed as one line: 检察院、法院，公安局 / 司法局."""
    return [p for p in (s.strip() for s in re.split(r"[,，、;；/\n]+", text or "")) if p]


def _clean(text: str | None, *, required: str | None = None) -> str | None:
    text = (text or "").strip()
    if not text:
        if required:
            raise VisitError(required)
        return None
    if len(text) > MAX_TEXT:
        raise VisitError("too_long", max=MAX_TEXT)
    return text


def _team(team: list[str] | tuple[str, ...]) -> list[str]:
    out = list(dict.fromkeys(" ".join(t.split()) for t in team if t and t.strip()))
    if len(out) > MAX_TEAM or any(len(t) > 64 for t in out):
        raise VisitError("team_too_big", max=MAX_TEAM)
    return out


async def _load_cases(tx: Tx, numbers: list[str] | tuple[str, ...]) -> list[VisitCase]:
    numbers = list(dict.fromkeys(n.strip().upper() for n in numbers if n and n.strip()))
    if len(numbers) > MAX_CASES:
        raise VisitError("too_many_cases", max=MAX_CASES)
    found = []
    for number in numbers:
        row = await tx.one(
            "SELECT id, number, status, lead_unit, co_units, openid FROM cases WHERE number = :n", n=number
        )
        if row is None:
            raise VisitError("no_case", number=number)
        found.append(
            VisitCase(
                row["id"],
                row["number"],
                False,
                row["status"],
                row["lead_unit"],
                tuple(unjs(row["co_units"]) or ()),
                row["openid"],
            )
        )
    return found


async def cases_for(tx: Tx, numbers: list[str]) -> list[VisitCase]:
    """The cases these numbers name (VisitError for one that does not exist): for a role check before a change."""
    return await _load_cases(tx, numbers)


async def _check_grid(tx: Tx, grid_id: int | None) -> None:
    if grid_id is not None and await areas.get(tx, grid_id) is None:
        raise VisitError("no_grid")


_INSERT = """
INSERT INTO visits (status, planned_for, done_at, place_label, latitude, longitude, grid_id, team, met, agreed,
    photo_media_ids, recorded_by, via, created_at)
VALUES (:status, :planned_for, :done_at, :place_label, :lat, :lng, :grid_id, :team, :met, :agreed, :photos, :by,
    :via, :now)
RETURNING id"""


async def _insert(tx: Tx, *, status: str, cases: list[VisitCase], resolved: set[int], **values) -> int:
    visit_id = await tx.val(_INSERT, status=status, **values)
    for c in cases:
        await tx.run(
            "INSERT INTO visit_cases (visit_id, case_id, resolved) VALUES (:v, :c, :r)",
            v=visit_id,
            c=c.case_id,
            r=c.case_id in resolved,
        )
    return visit_id


def _local(moment: datetime, tz) -> str:
    return moment.astimezone(tz).strftime("%Y年%m月%d日 %H:%M")


async def plan(
    tx: Tx,
    *,
    cases: list[str],
    grid_id: int | None,
    planned_for: datetime,
    team: list[str],
    by: str,
    via: str,
    clock: Clock,
    texts: Texts,
    tz,
    place: str | None = None,
    hotline: str = "",
) -> int:
    """A planned visit: the residents of its cases are told (date, team) through the outbox. Its id."""
    now = clock.now()
    if via not in VIA:
        raise ValueError(via)
    found = await _load_cases(tx, cases)
    if not found and grid_id is None:
        raise VisitError("no_target")
    if planned_for < now:
        raise VisitError("past")
    await _check_grid(tx, grid_id)
    team = _team(team)
    label = _clean(place)
    visit_id = await _insert(
        tx,
        status="planned",
        cases=found,
        resolved=set(),
        planned_for=tx.ts(planned_for),
        done_at=None,
        place_label=label,
        lat=None,
        lng=None,
        grid_id=grid_id,
        team=js(team),
        met=None,
        agreed=None,
        photos=js([]),
        by=by,
        via=via,
        now=tx.ts(now),
    )
    when = _local(planned_for, tz)
    team_text = "、".join(team) or texts("visit.team_office")
    for c in found:
        note = texts("visit.ledger_planned", id=visit_id, when=when, team=team_text)
        await add_ledger(tx, c.case_id, now, by, "visit_planned", note=note)
        text = texts("visit.notice_planned", number=c.number, when=when, team=team_text, hotline=hotline)
        await _tell(tx, clock, c, text, "visit_planned", texts("visit.status_planned"))
    return visit_id


async def _done(
    tx: Tx,
    visit_id: int,
    found: list[VisitCase],
    resolved: set[int],
    *,
    place: Place,
    met: str | None,
    agreed: str | None,
    by: str,
    now: datetime,
    texts: Texts,
    photos: list[str] | tuple[str, ...] = (),
) -> None:
    for c in found:
        # WeChat keeps media for 3 days: the visit's photos are fetched into each case's files, as a resident's are.
        await media.enqueue(tx, c.case_id, "photo", photos, now=now)
        outcome = texts("visit.resolved_mark" if c.case_id in resolved else "visit.unresolved_mark")
        note = texts("visit.ledger_visited", id=visit_id, place=place.label, outcome=outcome, agreed=agreed or "")
        await add_ledger(tx, c.case_id, now, by, "visited", note=note.strip())


def _resolved_ids(found: list[VisitCase], resolved: list[str] | bool) -> set[int]:
    """`True`: every case of the visit; else the numbers given, each of which must be one of its cases."""
    if resolved is True:
        return {c.case_id for c in found}
    by_number = {c.number: c.case_id for c in found}
    out = set()
    for number in resolved or []:
        number = number.strip().upper()
        if number not in by_number:
            raise VisitError("resolved_not_on_visit", number=number)
        out.add(by_number[number])
    return out


def _place(place: Place | None) -> Place:
    if place is None or not (place.label or "").strip():
        if place is not None and place.lat is not None:
            return Place("", place.lat, place.lng)
        raise VisitError("no_place")
    label = _clean(place.label) or ""
    return Place(label, place.lat, place.lng)


async def record(
    tx: Tx,
    *,
    cases: list[str],
    grid_id: int | None,
    place: Place | None,
    met: str | None,
    agreed: str | None,
    photos: list[str],
    resolved: list[str] | bool,
    team: list[str],
    by: str,
    via: str,
    now: datetime,
    texts: Texts,
) -> int:
    """A visit done now (or just now), not planned before: recorded after the fact. Its id."""
    if via not in VIA:
        raise ValueError(via)
    found = await _load_cases(tx, cases)
    if not found and grid_id is None:
        raise VisitError("no_target")
    await _check_grid(tx, grid_id)
    place = _place(place)
    met, agreed = _clean(met, required="no_met"), _clean(agreed, required="no_agreed")
    ids = _resolved_ids(found, resolved)
    photos = list(dict.fromkeys(p for p in photos if p))[:MAX_PHOTOS]
    visit_id = await _insert(
        tx,
        status="done",
        cases=found,
        resolved=ids,
        planned_for=None,
        done_at=tx.ts(now),
        place_label=place.label,
        lat=place.lat,
        lng=place.lng,
        grid_id=grid_id,
        team=js(_team(team)),
        met=met,
        agreed=agreed,
        photos=js(photos),
        by=by,
        via=via,
        now=tx.ts(now),
    )
    await _done(
        tx, visit_id, found, ids, place=place, met=met, agreed=agreed, by=by, now=now, texts=texts, photos=photos
    )
    return visit_id


async def complete(
    tx: Tx,
    visit_id: int,
    *,
    place: Place | None,
    met: str | None,
    agreed: str | None,
    photos: list[str],
    resolved: list[str] | bool,
    by: str,
    now: datetime,
    texts: Texts,
) -> None:
    """A planned visit done: where, who was met, what was agreed, which disputes were settled there."""
    visit = await get(tx, visit_id)
    if visit is None:
        raise VisitError("not_found", id=visit_id)
    if visit.status != "planned":
        raise VisitError("not_planned", id=visit_id, status=texts(f"visit.status_{visit.status}"))
    if place is None or not (place.label or "").strip():
        place = Place(visit.place_label or "", None, None) if visit.place_label else place
    place = _place(place)
    met, agreed = _clean(met, required="no_met"), _clean(agreed, required="no_agreed")
    ids = _resolved_ids(visit.cases, resolved)
    updated = await tx.run(
        "UPDATE visits SET status = 'done', done_at = :now, place_label = :label, latitude = :lat, longitude = :lng, "
        "met = :met, agreed = :agreed, photo_media_ids = :photos, recorded_by = :by "
        "WHERE id = :id AND status = 'planned'",
        now=tx.ts(now),
        label=place.label,
        lat=place.lat,
        lng=place.lng,
        met=met,
        agreed=agreed,
        photos=js(list(dict.fromkeys([*visit.photo_media_ids, *photos]))[:MAX_PHOTOS]),
        by=by,
        id=visit_id,
    )
    if updated != 1:
        raise VisitError("changed", id=visit_id)
    for case_id in ids:
        await tx.run(
            "UPDATE visit_cases SET resolved = :r WHERE visit_id = :v AND case_id = :c", r=True, v=visit_id, c=case_id
        )
    await _done(
        tx, visit_id, visit.cases, ids, place=place, met=met, agreed=agreed, by=by, now=now, texts=texts, photos=photos
    )


async def cancel(
    tx: Tx, visit_id: int, *, reason: str | None, by: str, clock: Clock, texts: Texts, tz, hotline: str = ""
) -> None:
    """A planned visit called off: the ledger says so, and the residents who were told of it are told again."""
    now = clock.now()
    visit = await get(tx, visit_id)
    if visit is None:
        raise VisitError("not_found", id=visit_id)
    if visit.status != "planned":
        raise VisitError("not_planned", id=visit_id, status=texts(f"visit.status_{visit.status}"))
    reason = _clean(reason, required="no_reason")
    if await tx.run("UPDATE visits SET status = 'cancelled' WHERE id = :id AND status = 'planned'", id=visit_id) != 1:
        raise VisitError("changed", id=visit_id)
    when = _local(visit.planned_for, tz) if visit.planned_for else ""
    for c in visit.cases:
        await add_ledger(tx, c.case_id, now, by, "visit_cancelled", note=reason)
        text = texts("visit.notice_cancelled", number=c.number, when=when, reason=reason, hotline=hotline)
        await _tell(tx, clock, c, text, "visit_cancelled", texts("visit.status_cancelled"))


# ---- reading ----------------------------------------------------------------------------------------------

_COLUMNS = (
    "id, status, planned_for, done_at, place_label, latitude, longitude, grid_id, team, met, agreed, "
    "photo_media_ids, recorded_by, via, created_at"
)


def _visit(tx: Tx, r) -> Visit:
    return Visit(
        r["id"],
        r["status"],
        tx.dt(r["planned_for"]),
        tx.dt(r["done_at"]),
        r["place_label"],
        r["latitude"],
        r["longitude"],
        r["grid_id"],
        list(unjs(r["team"]) or []),
        r["met"],
        r["agreed"],
        list(unjs(r["photo_media_ids"]) or []),
        r["recorded_by"],
        r["via"],
        tx.dt(r["created_at"]),
    )


async def _with_cases(tx: Tx, found: list[Visit]) -> list[Visit]:
    for v in found:
        rows = await tx.all(
            "SELECT vc.case_id, vc.resolved, c.number, c.status, c.lead_unit, c.co_units, c.openid "
            "FROM visit_cases vc JOIN cases c ON c.id = vc.case_id WHERE vc.visit_id = :v ORDER BY vc.id",
            v=v.id,
        )
        v.cases = [
            VisitCase(
                r["case_id"],
                r["number"],
                bool(r["resolved"]),
                r["status"],
                r["lead_unit"],
                tuple(unjs(r["co_units"]) or ()),
                r["openid"],
            )
            for r in rows
        ]
    return found


async def get(tx: Tx, visit_id: int) -> Visit | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM visits WHERE id = :id", id=visit_id)
    if row is None:
        return None
    (visit,) = await _with_cases(tx, [_visit(tx, row)])
    return visit


async def listing(
    tx: Tx,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    unit: str | None = None,
    recorded_by: tuple[str, ...] | None = None,
    limit: int = 200,
) -> list[Visit]:
    """Visits, the newest first: done in the period, or planned for it; `unit` — only those with a case of that
    unit; `recorded_by` — only those these names recorded."""
    where, params = ["1 = 1"], {"limit": limit}
    if since is not None and until is not None:
        params["since"], params["until"] = tx.ts(since), tx.ts(until)
        where.append(
            "((done_at >= :since AND done_at < :until) OR "
            "(done_at IS NULL AND planned_for >= :since AND planned_for < :until))"
        )
    if status in STATUSES:
        where.append("status = :status")
        params["status"] = status
    if unit is not None:
        params["scope"] = unit
        where.append(
            f"id IN (SELECT visit_id FROM visit_cases WHERE case_id IN (SELECT id FROM cases WHERE "
            f"{inbox.unit_condition('scope')}))"
        )
    if recorded_by is not None:
        names = {f"by{i}": name for i, name in enumerate(recorded_by)} or {"by0": ""}
        params.update(names)
        where.append(f"recorded_by IN ({', '.join(':' + k for k in names)})")
    rows = await tx.all(
        f"SELECT {_COLUMNS} FROM visits WHERE {' AND '.join(where)} "
        "ORDER BY COALESCE(done_at, planned_for, created_at) DESC, id DESC LIMIT :limit",
        **params,
    )
    return await _with_cases(tx, [_visit(tx, r) for r in rows])


async def for_case(tx: Tx, case_id: int) -> list[Visit]:
    rows = await tx.all(
        f"SELECT {_COLUMNS} FROM visits WHERE id IN (SELECT visit_id FROM visit_cases WHERE case_id = :c) "
        "ORDER BY id DESC",
        c=case_id,
    )
    return await _with_cases(tx, [_visit(tx, r) for r in rows])


async def counts_for_cases(tx: Tx, case_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per case: (visits done, of those the ones it was resolved on) — the ledger export's two columns."""
    if not case_ids:
        return {}
    params = {f"c{i}": cid for i, cid in enumerate(case_ids)}
    rows = await tx.all(
        "SELECT vc.case_id, COUNT(*) AS n, SUM(CASE WHEN vc.resolved THEN 1 ELSE 0 END) AS r "
        "FROM visit_cases vc JOIN visits v ON v.id = vc.visit_id "
        f"WHERE v.status = 'done' AND vc.case_id IN ({', '.join(':' + k for k in params)}) GROUP BY vc.case_id",
        **params,
    )
    return {r["case_id"]: (int(r["n"]), int(r["r"] or 0)) for r in rows}


# ---- figures ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    key: str | int | None  # a unit's name, an area's id; None: none known
    visits: int
    resolved: int


@dataclass
class VisitFigures:
    done: int = 0
    resolved: int = 0
    planned: int = 0  # planned for the period and not yet done or cancelled
    by_unit: list[Count] = field(default_factory=list)
    by_street: list[Count] = field(default_factory=list)
    by_grid: list[Count] = field(default_factory=list)


def _street_of(by_id: dict[int, areas.Area], area_id: int | None) -> int | None:
    area = by_id.get(area_id) if area_id is not None else None
    while area is not None and area.level != "street":
        area = by_id.get(area.parent_id) if area.parent_id is not None else None
    return area.id if area is not None else None


def _counted(table: dict) -> list[Count]:
    items = [Count(k, len(v), r) for k, (v, r) in table.items()]
    return sorted(items, key=lambda c: (c.key is None, -c.visits, -c.resolved, str(c.key)))


async def figures(tx: Tx, since: datetime, until: datetime, *, unit: str | None = None) -> VisitFigures:
    """Visits done in [since, until) and the disputes (cases) resolved on them: in all, by the case's lead unit,
    by street and by grid (the visit's grid, else the case's). A visit with cases of two units counts once for
    each; `unit` limits everything to that unit's cases (a visit without a case of theirs is not theirs)."""
    params: dict = {"since": tx.ts(since), "until": tx.ts(until)}
    scope = "1 = 1"
    if unit is not None:
        params["scope"] = unit
        scope = f"c.id IN (SELECT id FROM cases WHERE {inbox.unit_condition('scope')})"
    join = "JOIN" if unit is not None else "LEFT JOIN"
    # Visits are counted in tens or hundreds a year: a row per (visit, case) is summed up here.
    rows = await tx.all(
        f"""
SELECT v.id AS visit_id, v.grid_id AS visit_grid, vc.resolved, c.id AS case_id, c.lead_unit, c.grid_id AS case_grid
FROM visits v {join} visit_cases vc ON vc.visit_id = v.id {join} cases c ON c.id = vc.case_id
WHERE v.status = 'done' AND v.done_at >= :since AND v.done_at < :until AND {scope}""",
        **params,
    )
    planned_scope = (
        "1 = 1"
        if unit is None
        else "id IN (SELECT visit_id FROM visit_cases vc JOIN cases c ON c.id = vc.case_id WHERE " + scope + ")"
    )
    planned = await tx.val(
        "SELECT COUNT(*) FROM visits WHERE status = 'planned' AND planned_for >= :since AND planned_for < :until "
        f"AND {planned_scope}",
        **params,
    )
    tree = await areas.all_areas(tx)
    by_id = {a.id: a for a in tree}
    out = VisitFigures(planned=int(planned or 0))
    visits: set[int] = set()
    by_unit: dict = {}
    by_street: dict = {}
    by_grid: dict = {}
    for r in rows:
        visits.add(r["visit_id"])
        resolved = 1 if r["case_id"] is not None and r["resolved"] else 0
        out.resolved += resolved
        grid = r["visit_grid"] if r["visit_grid"] is not None else r["case_grid"]
        keys = (
            (by_unit, r["lead_unit"] if r["case_id"] is not None else None),
            (by_street, _street_of(by_id, grid)),
            (by_grid, grid),
        )
        for table, key in keys:
            entry = table.setdefault(key, [set(), 0])
            entry[0].add(r["visit_id"])
            entry[1] += resolved
    out.done = len(visits)
    out.by_unit, out.by_street, out.by_grid = _counted(by_unit), _counted(by_street), _counted(by_grid)
    return out


async def _tell(tx: Tx, clock: Clock, case, text: str, notice: str, status_text: str) -> None:
    """A notice about a visit to the case's resident — none once the case was detached from them."""
    if case.openid:
        await enqueue_text(
            tx, clock, case.openid, text, notice=notice, case_number=case.number, status_text=status_text
        )
