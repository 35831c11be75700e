"""Deadlines of a case: the clocks, their durable reminder rows, and the tick that fires them.

Clocks: `accept` runs from submission while the case is pending (complaint.acceptance_days); `handle` runs
from acceptance while the case is being handled (lifecycle.handling_days, moved once by an extension).
Each clock, when it starts or moves, gets three rows — warning (at deadlines.warn_share of its time), overdue
(at the deadline) and escalation (提级督办, deadlines.escalate_after_days later) — each with a unique dedupe key
(case:clock:kind:due), so arming a clock twice writes nothing new.

A scheduler tick claims due rows with a lease (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the store's
BEGIN IMMEDIATE), then fires each in its own transaction that also marks it done — only if this worker still
holds the claim. So two instances, or a restart after a crash mid-tick, neither lose nor double a reminder:
a crashed worker's lease runs out and another worker takes the row. A row whose clock stopped (accepted,
refused, closed, withdrawn, merged …) or moved (extension) is marked obsolete instead of fired.

The joint-dispatch check-in clock (bot/services/dispatch.py) keeps its reminder in the summons row itself
(one per summoned unit) and is fired by the same tick, with the same claim-lease-fire pattern.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.clock import Clock
from bot.config import Settings
from bot.services import dispatch
from bot.services.calendar import add_days
from bot.services.cases import add_ledger
from storage.fast import Store, Tx

log = logging.getLogger(__name__)

ACCEPT, HANDLE = "accept", "handle"
# While the case is in one of these statuses, the clock runs.
RUNNING = {ACCEPT: frozenset({"pending"}), HANDLE: frozenset({"accepted", "assigned", "in_progress", "reopened"})}
DUE_COLUMN = {ACCEPT: "accept_due_at", HANDLE: "handle_due_at"}
START_COLUMN = {ACCEPT: "created_at", HANDLE: "accepted_at"}
KINDS = ("warning", "overdue", "escalation")
SYSTEM = "system"


async def due_after(tx: Tx, start: datetime, days: int, settings: Settings) -> datetime:
    """A clock's deadline, in natural or working days as configured."""
    return await add_days(tx, start, days, working=settings.deadlines.day_kind == "working", tz=settings.tz)


def _key(case_id: int, clock: str, kind: str, due: datetime) -> str:
    return f"{case_id}:{clock}:{kind}:{due.astimezone(UTC).isoformat(timespec='seconds')}"


_ARM = """
INSERT INTO deadline_reminders (case_id, clock, kind, due_at, fire_at, dedupe_key, status, created_at)
VALUES (:case_id, :clock, :kind, :due, :fire, :key, 'pending', :now)
ON CONFLICT (dedupe_key) DO UPDATE SET status = 'pending'
WHERE deadline_reminders.status = 'obsolete'"""


async def arm(
    tx: Tx, case_id: int, clock: str, *, start: datetime, due: datetime, now: datetime, settings: Settings
) -> None:
    """Write the clock's reminder rows (once: the dedupe key). Rows of the same clock for another deadline
    become obsolete. A row made obsolete by a pause (replied) is revived when the clock runs again (reopen)."""
    d = settings.deadlines
    await tx.run(
        "UPDATE deadline_reminders SET status = 'obsolete', lease_owner = NULL "
        "WHERE case_id = :case_id AND clock = :clock AND status = 'pending' AND due_at <> :due",
        case_id=case_id,
        clock=clock,
        due=tx.ts(due),
    )
    fire = {
        "warning": start + (due - start) * d.warn_share,
        "overdue": due,
        "escalation": due + timedelta(days=d.escalate_after_days),
    }
    for kind in KINDS:
        await tx.run(
            _ARM,
            case_id=case_id,
            clock=clock,
            kind=kind,
            due=tx.ts(due),
            fire=tx.ts(fire[kind]),
            key=_key(case_id, clock, kind, due),
            now=tx.ts(now),
        )


# Cases whose clock runs but has no reminder rows yet: submissions (intake files them without knowing of
# deadlines) and cases from before this feature.
_UNARMED = """
SELECT c.id, c.created_at, c.accepted_at, c.accept_due_at, c.handle_due_at FROM cases c
WHERE c.status IN ({statuses}) AND c.{due} IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM deadline_reminders r WHERE r.case_id = c.id AND r.clock = :clock)
ORDER BY c.id LIMIT :limit"""


async def arm_unarmed(tx: Tx, *, now: datetime, settings: Settings, limit: int = 500) -> int:
    count = 0
    for clock in (ACCEPT, HANDLE):
        statuses = ", ".join(f"'{s}'" for s in sorted(RUNNING[clock]))
        rows = await tx.all(
            _UNARMED.format(statuses=statuses, due=DUE_COLUMN[clock]),
            clock=clock,
            limit=limit,
        )
        for row in rows:
            start = tx.dt(row[START_COLUMN[clock]]) or tx.dt(row["created_at"])
            due = tx.dt(row[DUE_COLUMN[clock]])
            if clock == ACCEPT and settings.deadlines.day_kind == "working":
                # Intake counts natural days; the office counts working days: the calendar decides.
                due = await due_after(tx, start, settings.complaint.acceptance_days, settings)
                await tx.run("UPDATE cases SET accept_due_at = :due WHERE id = :id", due=tx.ts(due), id=row["id"])
            await arm(tx, row["id"], clock, start=start, due=due, now=now, settings=settings)
            count += 1
    return count


@dataclass(frozen=True)
class Claimed:
    id: int
    case_id: int
    clock: str
    kind: str
    due_at: datetime


_CLAIM = """
UPDATE deadline_reminders SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM deadline_reminders
    WHERE status = 'pending' AND fire_at <= :now AND (lease_until IS NULL OR lease_until < :now)
    ORDER BY fire_at, id LIMIT :limit{lock})
RETURNING id, case_id, clock, kind, due_at"""


async def claim(tx: Tx, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    rows = await tx.all(
        _CLAIM.format(lock="" if tx.is_sqlite else " FOR UPDATE SKIP LOCKED"),
        owner=owner,
        until=tx.ts(now + lease),
        now=tx.ts(now),
        limit=limit,
    )
    return [Claimed(r["id"], r["case_id"], r["clock"], r["kind"], tx.dt(r["due_at"])) for r in rows]


_FINISH = """
UPDATE deadline_reminders SET status = :status, fired_at = :now, lease_owner = NULL, lease_until = NULL
WHERE id = :id AND status = 'pending' AND lease_owner = :owner"""

_STATE_RANK = {"ok": 0, "due_soon": 1, "overdue": 2}


async def fire(tx: Tx, row: Claimed, *, owner: str, now: datetime, settings: Settings) -> str | None:
    """Fire one claimed row (or retire it, if its clock stopped or moved): 'done', 'obsolete', or None
    when this worker no longer holds the claim (another took it over) — then nothing is written."""
    case = await tx.one(
        "SELECT id, status, accept_due_at, handle_due_at, deadline_state, escalated_at FROM cases WHERE id = :id"
        + ("" if tx.is_sqlite else " FOR UPDATE"),
        id=row.case_id,
    )
    current = tx.dt(case[DUE_COLUMN[row.clock]]) if case else None
    live = case is not None and case["status"] in RUNNING[row.clock] and current == row.due_at
    status = "done" if live else "obsolete"
    if await tx.run(_FINISH, status=status, now=tx.ts(now), id=row.id, owner=owner) != 1:
        return None
    if not live:
        return status
    due_text = row.due_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    note = f"{row.clock}:{due_text}"
    if row.kind == "escalation":
        await tx.run("UPDATE cases SET escalated_at = :now WHERE id = :id", now=tx.ts(now), id=case["id"])
        await add_ledger(tx, case["id"], now, SYSTEM, "escalated", note=note)
        return status
    state = "due_soon" if row.kind == "warning" else "overdue"
    if _STATE_RANK[state] > _STATE_RANK.get(case["deadline_state"], 0):
        await tx.run("UPDATE cases SET deadline_state = :state WHERE id = :id", state=state, id=case["id"])
    await add_ledger(tx, case["id"], now, SYSTEM, f"deadline_{row.kind}", note=note)
    return status


class DeadlineWorker:
    """The scheduler tick's work. One per process; `owner` tells its claims apart from other instances'."""

    def __init__(self, store: Store, clock: Clock, settings: Settings, owner: str | None = None):
        self.store, self.clock, self.settings = store, clock, settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def tick(self) -> int:
        """Arm clocks that have no rows yet, then fire due reminders, then flag late joint-dispatch check-ins;
        how many fired (obsolete and retired ones not counted)."""
        d = self.settings.deadlines
        try:
            async with self.store.write() as tx:
                await arm_unarmed(tx, now=self.clock.now(), settings=self.settings)
            fired = 0
            while True:
                now = self.clock.now()
                async with self.store.write() as tx:
                    rows = await claim(
                        tx, owner=self.owner, now=now, lease=timedelta(seconds=d.lease_seconds), limit=d.batch_size
                    )
                for row in rows:
                    async with self.store.write() as tx:
                        done = await fire(tx, row, owner=self.owner, now=self.clock.now(), settings=self.settings)
                    fired += done == "done"
                if len(rows) < d.batch_size:
                    # The joint-dispatch check-in clock (bot/services/dispatch.py): late units flagged, escalated.
                    return fired + await dispatch.tick(self.store, self.clock, self.settings, owner=self.owner)
        except Exception:
            log.exception("deadline tick failed")  # the rows stay; the next tick (or another instance) retries
            raise
