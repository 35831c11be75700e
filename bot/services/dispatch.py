"""Joint dispatch (街道吹哨、部门报到): a case summons several units with an urgency grade; each must check in.

`summon` writes one `summons` row per unit, due dispatch.checkin_minutes (or the grade's own minutes) later, and
one ledger entry (who, units, grade, reason). `check_in` records a unit's arrival, on time or late.

The row is also the check-in clock's durable reminder, fired the way deadline reminders are
(bot/services/deadlines.py, whose DeadlineWorker.tick runs `tick` here): a tick claims waiting rows past due_at
with a lease (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE), then fires each in its own transaction
that writes only if this worker still holds the claim and the row is still waiting and not yet escalated. So two
instances, or a restart after a crash mid-tick, flag and escalate a late unit exactly once. A unit that checks in
late before any tick noticed is flagged and escalated by its check-in, under the same condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import URGENCIES, Settings
from bot.services.cases import add_ledger
from bot.texts import Texts
from storage.fast import Conflict, Tx

# Only a case being handled can summon units; a summons whose case stopped being handled is retired, not flagged.
SUMMONABLE = frozenset({"accepted", "assigned", "in_progress", "reopened"})
WAITING, CHECKED_IN, RETIRED = "waiting", "checked_in", "retired"
SYSTEM = "system"


class DispatchRefused(Exception):
    """The summons or check-in is not allowed; the message says why, for the operator."""


@dataclass(frozen=True)
class Summoned:
    number: str
    units: list[str]
    urgency: str
    due_at: datetime


@dataclass(frozen=True)
class CheckedIn:
    number: str
    unit: str
    late: bool
    due_at: datetime


def _local(settings: Settings, moment: datetime) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


async def _case(tx: Tx, number: str):
    lock = "" if tx.is_sqlite else " FOR UPDATE"
    return await tx.one(f"SELECT id, number, status FROM cases WHERE number = :number{lock}", number=number)


_INSERT = """
INSERT INTO summons (case_id, unit, urgency, reason, summoned_by, summoned_at, due_at, status, late)
VALUES (:case_id, :unit, :urgency, :reason, :by, :now, :due, 'waiting', false)"""


async def summon(
    tx: Tx,
    number: str,
    units: list[str],
    *,
    urgency: str,
    by: str,
    reason: str | None,
    now: datetime,
    settings: Settings,
    texts: Texts,
) -> Summoned:
    """Summon the units to the case (all or none), each due to check in within its grade's minutes."""
    wanted = list(dict.fromkeys(u.strip() for u in units if u and u.strip()))
    if not wanted:
        raise DispatchRefused(texts("dispatch.units_required"))
    if urgency not in URGENCIES:
        raise DispatchRefused(texts("dispatch.bad_urgency", urgency=urgency))
    case = await _case(tx, number)
    if case is None:
        raise DispatchRefused(texts("lifecycle.not_found", number=number))
    if case["status"] not in SUMMONABLE:
        raise DispatchRefused(texts("dispatch.not_open", number=number, status=texts(f"status.{case['status']}")))
    rows = await tx.all("SELECT unit FROM summons WHERE case_id = :id", id=case["id"])
    already = [u for u in wanted if u in {r["unit"] for r in rows}]
    if already:
        raise DispatchRefused(texts("dispatch.already_summoned", number=number, units="、".join(already)))
    minutes = settings.dispatch.minutes_for(urgency)
    due = now + timedelta(minutes=minutes)
    for unit in wanted:
        try:
            await tx.run(
                _INSERT,
                case_id=case["id"],
                unit=unit,
                urgency=urgency,
                reason=reason,
                by=by,
                now=tx.ts(now),
                due=tx.ts(due),
            )
        except Conflict:  # someone summoned it a moment ago (the case row lock makes this rare)
            raise DispatchRefused(texts("dispatch.already_summoned", number=number, units=unit)) from None
    note = texts(
        "dispatch.summon_note",
        urgency=urgency,
        units="、".join(wanted),
        minutes=minutes,
        reason=f"｜{reason}" if reason else "",
    )
    await add_ledger(tx, case["id"], now, by, "summoned", note=note)
    return Summoned(number, wanted, urgency, due)


async def _escalate(tx: Tx, case_id: int, unit: str, due: datetime, *, now: datetime, settings: Settings) -> None:
    """The ledger of a late unit: 报到超时, then 提级督办; the case's escalated_at (shared with the deadlines)."""
    due_text = _local(settings, due)
    await add_ledger(tx, case_id, now, SYSTEM, "checkin_late", note=f"{unit}：{due_text}")
    await add_ledger(tx, case_id, now, SYSTEM, "escalated", note=f"checkin:{unit}:{due_text}")
    await tx.run("UPDATE cases SET escalated_at = :now WHERE id = :id", now=tx.ts(now), id=case_id)


async def check_in(tx: Tx, number: str, unit: str, *, by: str, now: datetime, settings: Settings, texts: Texts):
    """Record that the unit came. After its due time it is late: flagged and, unless a tick already did, escalated."""
    unit = (unit or "").strip()
    case = await _case(tx, number)
    if case is None:
        raise DispatchRefused(texts("lifecycle.not_found", number=number))
    row = await tx.one(
        "SELECT id, due_at, status, checked_in_at, escalated_at FROM summons WHERE case_id = :case_id AND unit = :unit"
        + ("" if tx.is_sqlite else " FOR UPDATE"),
        case_id=case["id"],
        unit=unit,
    )
    if row is None:
        raise DispatchRefused(texts("dispatch.not_summoned", number=number, unit=unit))
    if row["status"] != WAITING:
        at = tx.dt(row["checked_in_at"])
        raise DispatchRefused(
            texts("dispatch.already_checked_in", unit=unit, number=number, at=_local(settings, at) if at else "-")
        )
    due = tx.dt(row["due_at"])
    late = now > due
    escalate = late and row["escalated_at"] is None
    updated = await tx.run(
        "UPDATE summons SET status = 'checked_in', checked_in_at = :now, checked_in_by = :by, "
        "late = (late OR :late), escalated_at = COALESCE(escalated_at, :escalated), lease_owner = NULL, "
        "lease_until = NULL WHERE id = :id AND status = 'waiting'",
        now=tx.ts(now),
        by=by,
        late=late,
        escalated=tx.ts(now) if escalate else None,
        id=row["id"],
    )
    if updated != 1:  # pragma: no cover - the row lock (or SQLite's single writer) rules this out
        raise DispatchRefused(texts("lifecycle.changed", number=number))
    note = texts(
        "dispatch.checkin_note", unit=unit, due=_local(settings, due), late=texts("dispatch.late_mark") if late else ""
    )
    await add_ledger(tx, case["id"], now, by, "checked_in", note=note)
    if escalate:
        await _escalate(tx, case["id"], unit, due, now=now, settings=settings)
    return CheckedIn(number, unit, late, due)


# ---- the check-in clock: durable rows, leases, fired once ------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    case_id: int
    unit: str
    due_at: datetime


_CLAIM = """
UPDATE summons SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM summons
    WHERE status = 'waiting' AND escalated_at IS NULL AND due_at < :now
        AND (lease_until IS NULL OR lease_until < :now)
    ORDER BY due_at, id LIMIT :limit{lock})
RETURNING id, case_id, unit, due_at"""


async def claim(tx: Tx, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    rows = await tx.all(
        _CLAIM.format(lock="" if tx.is_sqlite else " FOR UPDATE SKIP LOCKED"),
        owner=owner,
        until=tx.ts(now + lease),
        now=tx.ts(now),
        limit=limit,
    )
    return [Claimed(r["id"], r["case_id"], r["unit"], tx.dt(r["due_at"])) for r in rows]


_MARK_LATE = """
UPDATE summons SET late = true, escalated_at = :now, lease_owner = NULL, lease_until = NULL
WHERE id = :id AND status = 'waiting' AND escalated_at IS NULL AND lease_owner = :owner"""
_RETIRE = """
UPDATE summons SET status = 'retired', lease_owner = NULL, lease_until = NULL
WHERE id = :id AND status = 'waiting' AND escalated_at IS NULL AND lease_owner = :owner"""


async def fire(tx: Tx, row: Claimed, *, owner: str, now: datetime, settings: Settings) -> str | None:
    """Flag and escalate one claimed late unit: 'late'; 'retired' when its case is no longer being handled;
    None when this worker no longer holds the claim or the unit checked in meanwhile — then nothing is written."""
    case = await tx.one(
        "SELECT id, status FROM cases WHERE id = :id" + ("" if tx.is_sqlite else " FOR UPDATE"), id=row.case_id
    )
    live = case is not None and case["status"] in SUMMONABLE
    if not live:
        return "retired" if await tx.run(_RETIRE, id=row.id, owner=owner) == 1 else None
    if await tx.run(_MARK_LATE, now=tx.ts(now), id=row.id, owner=owner) != 1:
        return None
    await _escalate(tx, row.case_id, row.unit, row.due_at, now=now, settings=settings)
    return "late"


async def tick(store, clock, settings: Settings, *, owner: str) -> int:
    """Claim and fire every late summons (in batches); how many were flagged late."""
    d = settings.deadlines
    flagged = 0
    while True:
        async with store.write() as tx:
            rows = await claim(
                tx, owner=owner, now=clock.now(), lease=timedelta(seconds=d.lease_seconds), limit=d.batch_size
            )
        for row in rows:
            async with store.write() as tx:
                done = await fire(tx, row, owner=owner, now=clock.now(), settings=settings)
            flagged += done == "late"
        if len(rows) < d.batch_size:
            return flagged


# ---- reading -----------------------------------------------------------------------------------------------


_LIST = """
SELECT c.number, c.status AS case_status, s.unit, s.urgency, s.reason, s.summoned_by, s.summoned_at, s.due_at,
    s.status, s.checked_in_at, s.checked_in_by, s.late, s.escalated_at
FROM summons s JOIN cases c ON c.id = s.case_id {where} ORDER BY s.due_at, c.number, s.unit"""


async def listing(tx: Tx, *, late_only: bool = False, number: str | None = None) -> list[dict]:
    """Summoned units, soonest due first: every summons, only the late ones, or one case's."""
    where, params = [], {}
    if late_only:
        where.append("s.late = true")
    if number:
        where.append("c.number = :number")
        params["number"] = number
    sql = _LIST.format(where=("WHERE " + " AND ".join(where)) if where else "")
    out = []
    for r in await tx.all(sql, **params):
        out.append(
            {
                "number": r["number"],
                "case_status": r["case_status"],
                "unit": r["unit"],
                "urgency": r["urgency"],
                "reason": r["reason"],
                "summoned_by": r["summoned_by"],
                "summoned_at": tx.dt(r["summoned_at"]),
                "due_at": tx.dt(r["due_at"]),
                "status": r["status"],
                "checked_in_at": tx.dt(r["checked_in_at"]),
                "checked_in_by": r["checked_in_by"],
                "late": bool(r["late"]),
                "escalated_at": tx.dt(r["escalated_at"]),
            }
        )
    return out
