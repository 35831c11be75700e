"""What staff read: the inbox (cases filtered, searched, a page at a time) and one case's whole file.

The inbox is paginated by keyset, never by OFFSET, so page 2,000 costs what page 1 costs. Cases whose clock is
running (待受理 and 办理中 …) are listed by their deadline, soonest first, through the partial expression index
ix_cases_due; every other view lists the newest first through the index on created_at. An area (a grid, or a
community, street or district and so every grid under it) narrows any view to the cases filed from its grids.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.services import areas, deadlines, privacy
from bot.services.cases import LedgerEntry
from storage.fast import Tx, in_list, unjs

# The deadline of the clock a case has running: acceptance while pending, handling after. The same text as the
# expression of ix_cases_due (storage/models.py), so that both databases' planners use that index.
DUE = "(CASE WHEN status = 'pending' THEN accept_due_at ELSE handle_due_at END)"
RUNNING = tuple(sorted(deadlines.RUNNING[deadlines.ACCEPT] | deadlines.RUNNING[deadlines.HANDLE]))
STATUSES = (
    "pending",
    "accepted",
    "refused",
    "assigned",
    "in_progress",
    "replied",
    "closed",
    "merged",
    "withdrawn",
    "reopened",
)
# "todo" (the default): every case with a running clock; "all"; or one status.
VIEWS = ("todo", "all")
DEADLINE_STATES = ("due_soon", "overdue")
_NUMBER = re.compile(r"^[A-Za-z]{1,8}\d{8}-?\d{1,6}$")


@dataclass(frozen=True)
class Filters:
    view: str = "todo"  # todo · all · a status
    category: str | None = None
    unit: str | None = None
    deadline: str | None = None  # due_soon · overdue
    q: str | None = None
    repeat: bool = False  # only cases flagged as possible repeats
    # An area of the geography tree, of any level (areas.id): the cases filed from the grids at or below it.
    area: int | None = None


@dataclass(frozen=True)
class Row:
    id: int
    number: str
    category: str
    place: str
    summary: str
    status: str
    lead_unit: str | None
    created_at: datetime
    due_at: datetime | None
    deadline_state: str
    repeat: bool
    grid_id: int | None = None
    # Filed after a 息诉罢访 commitment on the same matter (bot/services/longrun.py): staff decide.
    after_commitment: bool = False


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    # The cursor of the next page ("" when this is the last).
    next_after: str


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def ids_in(tx: Tx, column: str, ids: list[int], name: str) -> tuple[str, dict]:
    """SQL true where `column` is one of these ids, and its parameters. SQLite: a named parameter each.
    PostgreSQL: one array parameter, so that the statement's text is the same whatever the number of ids
    (storage.fast.in_list)."""
    if not ids:
        return "1 = 0", {}
    listed, params = in_list(tx, list(ids), name)
    return f"{column} IN ({listed})", params


async def _area_condition(tx: Tx, tree: list[areas.Area], area: int, limit: int) -> tuple[str, dict]:
    """SQL true for the cases filed from the grids at or below `area`.

    A small area's cases are read through ix_cases_grid_id and sorted; a large one's are better found by walking
    the view's own order (ix_cases_due, created_at) and skipping the others — a district's 300,000 cases read
    and sorted take 0.5 s, a walk 1 ms. PostgreSQL's planner weighs that from its statistics. SQLite has none
    (nothing runs ANALYZE) and takes the grid index for any IN list, so the choice is made here, cases taken to
    be spread evenly over the grids: through the index a page costs the area's share of the cases, walking
    `limit` over that share; `+grid_id` keeps SQLite off the index."""
    grids = areas.grids_under(tree, [area])
    column = "grid_id"
    if tx.is_sqlite and grids:
        share = len(grids) / max(1, sum(1 for a in tree if a.level == "grid"))
        cases = await tx.val("SELECT MAX(id) FROM cases") or 0  # about how many there are, at no cost
        if share * cases > limit / share:
            column = "+grid_id"
    return ids_in(tx, column, grids, "grid")


def _where(tx: Tx, f: Filters, area: tuple[str, dict] | None) -> tuple[list[str], dict]:
    where: list[str] = []
    params: dict = {}
    if area is not None:
        where.append(area[0])
        params.update(area[1])
    if f.view == "todo":
        where.append(f"status IN ({', '.join(repr(s) for s in RUNNING)})")
        where.append(f"{DUE} IS NOT NULL")
    elif f.view != "all":
        where.append("status = :status")
        params["status"] = f.view
    if f.category:
        where.append("category = :category")
        params["category"] = f.category
    if f.unit:
        where.append("lead_unit = :unit")
        params["unit"] = f.unit
    if f.deadline in DEADLINE_STATES:
        where.append("deadline_state = :deadline")
        params["deadline"] = f.deadline
    if f.repeat:
        where.append("EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = cases.id AND e.action = 'possible_repeat')")
    q = (f.q or "").strip()
    if q:
        if _NUMBER.match(q):
            where.append("number = :number")
            params["number"] = q.upper()
        elif tx.is_sqlite and len(q) >= 3:
            # The trigram index (migration 0017): a phrase of three characters or more, anywhere in either column.
            where.append("id IN (SELECT rowid FROM cases_search WHERE cases_search MATCH :phrase)")
            params["phrase"] = '"' + q.replace('"', '""') + '"'
        else:
            # PostgreSQL's trigram indexes serve this LIKE; on SQLite a shorter word reads the cases.
            where.append("(description LIKE :text ESCAPE '\\' OR place_label LIKE :text ESCAPE '\\')")
            params["text"] = f"%{_escape_like(q)}%"
    return where, params


def unit_condition(scope_param: str = "scope") -> str:
    """SQL true for the cases a unit leads or co-handles (`:scope` the unit's name), for any query on cases."""
    return f"(lead_unit = :{scope_param} OR id IN (SELECT case_id FROM case_co_units WHERE unit = :{scope_param}))"


async def page(
    tx: Tx,
    f: Filters,
    *,
    unit_scope: str | None = None,
    after: str = "",
    limit: int = 50,
    phone_mark: str | None = None,
    tree: list[areas.Area] | None = None,
) -> Page:
    """One page of the inbox; `after` is the previous page's next_after. `unit_scope` limits it to one unit's:
    the cases it leads (through ix_cases_unit_due / ix_cases_unit_created) and those it co-handles (through
    case_co_units), each read in order and merged — one query with OR would read every case in order.
    `phone_mark`, for a reader who may not see phone numbers, stands in for those typed into place and story.
    `tree` is the geography tree when the caller has read it already (for `f.area`)."""
    area = None
    if f.area is not None:
        tree = tree if tree is not None else await areas.all_areas(tx)
        area = await _area_condition(tx, tree, f.area, limit)
    found = await _scoped_page(tx, f, area, unit_scope=unit_scope, after=after, limit=limit)
    if phone_mark is None:
        return found
    hidden = [
        dataclasses.replace(
            row,
            summary=privacy.hide_phones(row.summary, mark=phone_mark),
            place=privacy.hide_phones(row.place, mark=phone_mark),
        )
        for row in found.rows
    ]
    return Page(hidden, found.next_after)


async def _scoped_page(
    tx: Tx, f: Filters, area: tuple[str, dict] | None, *, unit_scope: str | None, after: str, limit: int
) -> Page:
    if unit_scope is None:
        return await _page(tx, f, area, [], {}, after=after, limit=limit)
    lead = await _page(tx, f, area, ["lead_unit = :scope"], {"scope": unit_scope}, after=after, limit=limit)
    co = await _page(
        tx,
        f,
        area,
        ["id IN (SELECT case_id FROM case_co_units WHERE unit = :scope)", "(lead_unit IS NULL OR lead_unit <> :scope)"],
        {"scope": unit_scope},
        after=after,
        limit=limit,
    )
    if not co.rows:
        return lead
    by_deadline = f.view == "todo"

    def key(row: Row):
        return (row.due_at, row.id) if by_deadline else (-row.created_at.timestamp(), -row.id)

    merged = sorted([*lead.rows, *co.rows], key=key)
    more = bool(lead.next_after or co.next_after) or len(merged) > limit
    rows = merged[:limit]
    return Page(rows, _cursor(rows[-1], by_deadline) if more and rows else "")


def _cursor(last: Row, by_deadline: bool) -> str:
    key = last.due_at if by_deadline else last.created_at
    return f"{key.isoformat()}_{last.id}"


async def _page(
    tx: Tx, f: Filters, area: tuple[str, dict] | None, extra: list[str], extra_params: dict, *, after: str, limit: int
) -> Page:
    where, params = _where(tx, f, area)
    where += extra
    params.update(extra_params)
    by_deadline = f.view == "todo"
    if after:
        try:
            key, last_id = after.rsplit("_", 1)
            moment, row = datetime.fromisoformat(key), int(last_id)
            if moment.tzinfo is None or not 2000 <= moment.year <= 2100 or not 0 <= row < 2**31:
                raise ValueError(after)
            params["after_key"], params["after_id"] = tx.ts(moment), row
        except (ValueError, OverflowError):
            pass  # a cursor someone edited: start from the first page
        else:
            keyset = (
                f"({DUE}, id) > (:after_key, :after_id)"
                if by_deadline
                else "(created_at, id) < (:after_key, :after_id)"
            )
            where.append(keyset)
    order = f"{DUE}, id" if by_deadline else "created_at DESC, id DESC"
    sql = f"""
SELECT id, number, category, place_label, description, status, lead_unit, created_at, {DUE} AS due_at, deadline_state,
    grid_id, EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = cases.id AND e.action = 'possible_repeat') AS repeat,
    EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = cases.id AND e.action = 'after_commitment')
        AS after_commitment
FROM cases {"WHERE " + " AND ".join(where) if where else ""}
ORDER BY {order} LIMIT :limit"""
    found = await tx.all(sql, limit=limit + 1, **params)
    rows = [
        Row(
            r["id"],
            r["number"],
            r["category"],
            r["place_label"],
            summary(r["description"]),
            r["status"],
            r["lead_unit"],
            tx.dt(r["created_at"]),
            tx.dt(r["due_at"]),
            r["deadline_state"],
            bool(r["repeat"]),
            r["grid_id"],
            bool(r["after_commitment"]),
        )
        for r in found[:limit]
    ]
    return Page(rows, _cursor(rows[-1], by_deadline) if len(found) > limit and rows else "")


def summary(text: str, length: int = 60) -> str:
    """A resident's story on one line, cut to `length` characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


# --- one case's file ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summoned:
    unit: str
    urgency: str
    due_at: datetime
    status: str
    late: bool
    checked_in_at: datetime | None


@dataclass
class CaseFile:
    id: int
    number: str
    openid: str | None
    category: str
    place: str
    latitude: float | None
    longitude: float | None
    description: str
    contact_phone: str | None
    status: str
    tier: str | None
    lead_unit: str | None
    co_units: list[str]
    created_at: datetime
    accept_due_at: datetime | None
    accepted_at: datetime | None
    handle_due_at: datetime | None
    reply_text: str | None
    closed_at: datetime | None
    merged_into: str | None
    rating: int | None
    rating_comment: str | None
    deadline_state: str
    escalated_at: datetime | None
    extended_at: datetime | None
    links: list[str] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    summons: list[Summoned] = field(default_factory=list)
    # Cases this one is linked with: possible repeats, the case it was merged into, cases merged into it.
    related: list[str] = field(default_factory=list)

    @property
    def due_at(self) -> datetime | None:
        if self.status in deadlines.RUNNING[deadlines.ACCEPT]:
            return self.accept_due_at
        if self.status in deadlines.RUNNING[deadlines.HANDLE]:
            return self.handle_due_at
        return None


async def case_file(tx: Tx, number: str) -> CaseFile | None:
    r = await tx.one(
        "SELECT id, number, openid, category, place_label, latitude, longitude, description, contact_phone, status, "
        "tier, lead_unit, co_units, created_at, accept_due_at, accepted_at, handle_due_at, reply_text, closed_at, "
        "merged_into, rating, rating_comment, deadline_state, escalated_at, extended_at, links "
        "FROM cases WHERE number = :number",
        number=number,
    )
    if r is None:
        return None
    case = CaseFile(
        r["id"],
        r["number"],
        r["openid"],
        r["category"],
        r["place_label"],
        r["latitude"],
        r["longitude"],
        r["description"],
        r["contact_phone"],
        r["status"],
        r["tier"],
        r["lead_unit"],
        list(unjs(r["co_units"]) or []),
        tx.dt(r["created_at"]),
        tx.dt(r["accept_due_at"]),
        tx.dt(r["accepted_at"]),
        tx.dt(r["handle_due_at"]),
        r["reply_text"],
        tx.dt(r["closed_at"]),
        r["merged_into"],
        r["rating"],
        r["rating_comment"],
        r["deadline_state"],
        tx.dt(r["escalated_at"]),
        tx.dt(r["extended_at"]),
        list(unjs(r["links"]) or []),
    )
    case.ledger = [
        LedgerEntry(tx.dt(e["at"]), e["actor"], e["action"], e["from_status"], e["to_status"], e["note"])
        for e in await tx.all(
            "SELECT at, actor, action, from_status, to_status, note FROM case_events WHERE case_id = :id ORDER BY id",
            id=case.id,
        )
    ]
    case.summons = [
        Summoned(s["unit"], s["urgency"], tx.dt(s["due_at"]), s["status"], bool(s["late"]), tx.dt(s["checked_in_at"]))
        for s in await tx.all(
            "SELECT unit, urgency, due_at, status, late, checked_in_at FROM summons WHERE case_id = :id ORDER BY id",
            id=case.id,
        )
    ]
    related = [n for e in case.ledger if e.action == "possible_repeat" and e.note for n in e.note.split("、")]
    if case.merged_into:
        related.append(case.merged_into)
    related += [
        m["number"] for m in await tx.all("SELECT number FROM cases WHERE merged_into = :n ORDER BY id", n=number)
    ]
    case.related = list(dict.fromkeys(n for n in related if n and n != number))
    return case
