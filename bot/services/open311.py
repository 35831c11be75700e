"""Open311 GeoReport v2, read side: the office's complaint categories as services, its cases as service
requests — in the vocabulary other city platforms already speak (https://wiki.open311.org/GeoReport_v2).

Service codes: each category's code is "c" and the first 8 hex digits of the sha256 of its name (UTF-8), e.g.
物业与停车 → c2b1f…. It is ASCII, the same on every instance and in every release, and it does not move when a
city reorders or adds categories in its configuration; only renaming a category gives it a new code (a renamed
category is, to an integrating platform, a different service).

What leaves here never holds a phone number or an openid: contact phones are not selected, and phone numbers a
resident typed into the description (or staff into a reply) are hidden (`hide_phones`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from bot.config import Settings
from bot.services import deadlines, inbox, lifecycle, privacy, routing
from bot.texts import Texts
from storage.fast import Tx

OPEN = tuple(sorted(lifecycle.OPEN))
CLOSED = ("closed", "merged", "refused", "withdrawn")
STATES = ("open", "closed")
# Ledger entries whose note the resident was told (the reply, the reason of a refusal, a reopening, an extension;
# the case a matter was merged into); the latest of them is a request's status_notes. Internal notes, routing
# and dispatch entries, possible repeats are not among them.
TOLD_NOTES = ("closed", "extended", "merged", "refused", "reopened", "replied", "withdrawn")
MOST_REQUESTS = 1000


def service_code(category: str) -> str:
    """The category's stable ASCII code (see the module's docstring)."""
    return "c" + hashlib.sha256(category.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    keywords: list[str]
    group: str  # the tier (三事分解) the category belongs to, "" if none
    tier: str | None
    lead_unit: str | None
    pool: str | None


def catalog(settings: Settings, texts: Texts) -> list[Service]:
    """One service per configured complaint category, in the configuration's order."""
    found = []
    for name in settings.complaint.categories:
        tier = routing.tier_for(settings, name)
        unit = routing.lead_unit(settings, name, "")
        description = texts("api.open311.service_description", category=name, unit=unit or texts("api.open311.office"))
        keywords = [part for part in re.split(r"[与和及、/,，\s]+", name) if part]
        found.append(
            Service(
                service_code(name),
                name,
                description,
                keywords,
                tier or "",
                tier,
                unit,
                routing.pool_for(settings, tier),
            )
        )
    return found


def category_of(settings: Settings, code: str) -> str | None:
    """The configured category whose service code this is."""
    return next((name for name in settings.complaint.categories if service_code(name) == code), None)


@dataclass(frozen=True)
class Query:
    """GeoReport's filters. `numbers` (service_request_id) overrides all the others, as the standard says."""

    numbers: tuple[str, ...] = ()
    category: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    state: str | None = None  # open · closed
    limit: int = MOST_REQUESTS


@dataclass(frozen=True)
class ServiceRequest:
    number: str
    category: str
    state: str  # open · closed
    status_notes: str | None
    lead_unit: str | None
    description: str
    address: str
    latitude: float | None
    longitude: float | None
    requested_at: datetime
    updated_at: datetime
    expected_at: datetime | None  # the deadline of the clock running, if one is


_REQUESTS = f"""
SELECT id, number, category, place_label, latitude, longitude, description, contact_phone, status, lead_unit,
    created_at, updated_at, accept_due_at, handle_due_at,
    (SELECT e.note FROM case_events e WHERE e.case_id = cases.id AND e.note IS NOT NULL
        AND e.action IN ({", ".join(repr(a) for a in TOLD_NOTES)}) ORDER BY e.id DESC LIMIT 1) AS told
FROM cases"""


async def requests(tx: Tx, q: Query, *, unit_scope: str | None, phone_mark: str) -> list[ServiceRequest]:
    """The cases matching `q`, newest first, at most q.limit; only those of `unit_scope` (lead or co-handling
    unit) when it is given. `phone_mark` stands in for phone numbers found in free text."""
    where: list[str] = []
    params: dict = {}
    if q.numbers:
        names = [f"n{i}" for i in range(len(q.numbers))]
        where.append(f"number IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, q.numbers, strict=True))
    else:
        if q.category is not None:
            where.append("category = :category")
            params["category"] = q.category
        if q.start is not None:
            where.append("created_at >= :start")
            params["start"] = tx.ts(q.start)
        if q.end is not None:
            where.append("created_at <= :end")
            params["end"] = tx.ts(q.end)
        if q.state is not None:
            where.append(f"status IN ({', '.join(repr(s) for s in (OPEN if q.state == 'open' else CLOSED))})")
    if unit_scope is not None:
        where.append(inbox.unit_condition())
        params["scope"] = unit_scope
    sql = (
        f"{_REQUESTS} {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    rows = await tx.all(sql, limit=q.limit, **params)
    return [_request(tx, r, phone_mark) for r in rows]


def _request(tx: Tx, r, mark: str) -> ServiceRequest:
    status, phone = r["status"], r["contact_phone"]
    expected = None
    if status in deadlines.RUNNING[deadlines.ACCEPT]:
        expected = tx.dt(r["accept_due_at"])
    elif status in deadlines.RUNNING[deadlines.HANDLE]:
        expected = tx.dt(r["handle_due_at"])
    return ServiceRequest(
        number=r["number"],
        category=r["category"],
        state="open" if status in lifecycle.OPEN else "closed",
        status_notes=privacy.hide_phones(r["told"], mark=mark, known=phone),
        lead_unit=r["lead_unit"],
        description=privacy.hide_phones(r["description"], mark=mark, known=phone) or "",
        address=privacy.hide_phones(r["place_label"], mark=mark, known=phone) or "",
        latitude=r["latitude"],
        longitude=r["longitude"],
        requested_at=tx.dt(r["created_at"]),
        updated_at=tx.dt(r["updated_at"]),
        expected_at=expected,
    )
