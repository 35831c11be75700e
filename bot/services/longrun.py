"""Long-running cases (积案) and closing by commitment (息诉罢访).

A case still open after fieldwork.long_running_days, or reopened (发回重办) fieldwork.long_running_reopens times
or more, is long-running: it gets a responsible leader (包案领导) and is on the supervisors' list with its age,
reopens, visits and latest step. Such a case may end with the resident's signed commitment to stop petitioning
(息诉罢访承诺书): the file is attached and the case closed with the reason 息诉罢访 (lifecycle's commit_close).
A later complaint by that resident on the same matter is flagged to staff at intake — never refused: a person
decides what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.config import Settings
from bot.services import case_files, lifecycle
from bot.services.cases import NEARBY_DEGREES, OPEN_STATUSES, LedgerEntry, NewComplaint, add_ledger
from bot.services.inbox import ids_in
from bot.texts import Texts
from storage.fast import Tx

_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
LEADER_CHARS = 64  # cases.leader
AFTER_COMMITMENT = "after_commitment"  # the ledger action of the intake flag


class LongRunRefused(Exception):
    """Why a leader could not be set (the message is for the operator)."""


@dataclass(frozen=True)
class LongRunning:
    number: str
    status: str
    category: str
    place: str
    created_at: datetime
    age_days: int
    reopen_count: int
    leader: str | None
    lead_unit: str | None
    visits: int  # visits done that took this case along
    latest: LedgerEntry | None  # the last ledger entry: where it stands, what was done last


@dataclass(frozen=True)
class Facts:
    """What the case page shows of this: the leader, reopens, the commitment, and the intake flag."""

    status: str
    created_at: datetime
    reopen_count: int
    leader: str | None
    commitment_at: datetime | None
    close_reason: str | None
    long_running: bool
    age_days: int
    commitments: list[case_files.CaseFile] = field(default_factory=list)
    # Earlier cases of this resident closed by commitment on the same matter (the intake flag).
    after_commitment: list[str] = field(default_factory=list)


def is_long_running(case, now: datetime, settings: Settings) -> bool:
    """`case` has status, created_at and reopen_count (a row or an object)."""
    get = case.get if isinstance(case, dict) else lambda name: getattr(case, name)
    if get("status") not in OPEN_STATUSES:
        return False
    f = settings.fieldwork
    return (now - get("created_at")) > timedelta(days=f.long_running_days) or (
        get("reopen_count") or 0
    ) >= f.long_running_reopens


_LIST = f"""
SELECT c.id, c.number, c.status, c.category, c.place_label, c.created_at, c.reopen_count, c.leader, c.lead_unit,
    (SELECT COUNT(*) FROM visit_cases vc JOIN visits v ON v.id = vc.visit_id
     WHERE vc.case_id = c.id AND v.status = 'done') AS visits,
    (SELECT MAX(e.id) FROM case_events e WHERE e.case_id = c.id) AS last_event
FROM cases c
WHERE c.status IN {_OPEN_SQL} AND (c.created_at < :cutoff OR c.reopen_count >= :reopens)
ORDER BY c.created_at, c.id LIMIT :limit"""


async def listing(tx: Tx, now: datetime, settings: Settings, *, limit: int = 500) -> list[LongRunning]:
    """Every long-running open case, oldest first. One query over the open cases (ix_cases_status) with the
    visits and the last ledger entry per case through their indexes, then one read of those entries."""
    f = settings.fieldwork
    rows = await tx.all(
        _LIST, cutoff=tx.ts(now - timedelta(days=f.long_running_days)), reopens=f.long_running_reopens, limit=limit
    )
    event_ids = [r["last_event"] for r in rows if r["last_event"] is not None]
    latest: dict[int, LedgerEntry] = {}
    if event_ids:
        cond, params = ids_in(tx, "id", event_ids, "ev")
        for e in await tx.all(
            f"SELECT id, at, actor, action, from_status, to_status, note FROM case_events WHERE {cond}", **params
        ):
            latest[e["id"]] = LedgerEntry(
                tx.dt(e["at"]), e["actor"], e["action"], e["from_status"], e["to_status"], e["note"]
            )
    out = []
    for r in rows:
        created = tx.dt(r["created_at"])
        out.append(
            LongRunning(
                number=r["number"],
                status=r["status"],
                category=r["category"],
                place=r["place_label"],
                created_at=created,
                age_days=(now - created).days,
                reopen_count=r["reopen_count"] or 0,
                leader=r["leader"],
                lead_unit=r["lead_unit"],
                visits=int(r["visits"] or 0),
                latest=latest.get(r["last_event"]),
            )
        )
    return out


async def facts(tx: Tx, case_id: int, now: datetime, settings: Settings) -> Facts | None:
    r = await tx.one(
        "SELECT status, created_at, reopen_count, leader, commitment_at, close_reason FROM cases WHERE id = :id",
        id=case_id,
    )
    if r is None:
        return None
    created = tx.dt(r["created_at"])
    flagged = await tx.all(
        "SELECT note FROM case_events WHERE case_id = :id AND action = :action ORDER BY id",
        id=case_id,
        action=AFTER_COMMITMENT,
    )
    earlier = [n for e in flagged if e["note"] for n in e["note"].split("、")]
    data = {"status": r["status"], "created_at": created, "reopen_count": r["reopen_count"] or 0}
    return Facts(
        status=r["status"],
        created_at=created,
        reopen_count=r["reopen_count"] or 0,
        leader=r["leader"],
        commitment_at=tx.dt(r["commitment_at"]),
        close_reason=r["close_reason"],
        long_running=is_long_running(data, now, settings),
        age_days=(now - created).days,
        commitments=await case_files.for_case(tx, case_id, "commitment"),
        after_commitment=list(dict.fromkeys(earlier)),
    )


async def set_leader(tx: Tx, number: str, leader: str, *, by: str, now: datetime, texts: Texts) -> None:
    """Name the responsible leader (包案领导) of an open case, on its ledger."""
    leader = " ".join((leader or "").split())
    if not leader:
        raise LongRunRefused(texts("longrun.leader_required"))
    if len(leader) > LEADER_CHARS:
        raise LongRunRefused(texts("longrun.leader_too_long", max=LEADER_CHARS))
    case_id = await tx.val(
        f"UPDATE cases SET leader = :leader, updated_at = :now WHERE number = :number AND status IN {_OPEN_SQL} "
        "RETURNING id",
        leader=leader,
        now=tx.ts(now),
        number=number,
    )
    if case_id is None:
        exists = await tx.val("SELECT status FROM cases WHERE number = :number", number=number)
        key = "longrun.leader_closed" if exists else "lifecycle.not_found"
        raise LongRunRefused(texts(key, number=number))
    await add_ledger(tx, case_id, now, by, "leader_assigned", note=leader)


async def commit_close(
    tx: Tx,
    number: str,
    saved: case_files.Saved | None,
    *,
    by: str,
    clock: Clock,
    settings: Settings,
    texts: Texts,
    note: str | None = None,
) -> lifecycle.Moved:
    """Close by commitment (息诉罢访): the signed commitment (saved already, outside the transaction, by
    case_files.save_bytes) is recorded on the case, then the commit_close move closes it with the reason 息诉罢访,
    sets commitment_at, ledgers it and tells the resident — all in the caller's transaction."""
    if saved is None:
        raise lifecycle.MoveRefused(texts("longrun.commitment_required"))
    case_id = await tx.val("SELECT id FROM cases WHERE number = :number", number=number)
    if case_id is None:
        raise lifecycle.MoveRefused(texts("lifecycle.not_found", number=number))
    await case_files.record(tx, case_id, "commitment", saved, by=by, now=clock.now())
    request = lifecycle.Request(action="commit_close", number=number, by=by, reason=note)
    return await lifecycle.move(tx, request, clock=clock, settings=settings, texts=texts)


def _same_matter(new: NewComplaint, row) -> bool:
    """The same category, or the same place (the address, or pinned within about a hundred metres) — the test
    cases.similar_own and cases.similar_elsewhere use for a possible repeat."""
    if row["category"] == new.category or (new.place_label and row["place_label"] == new.place_label):
        return True
    if None in (new.latitude, new.longitude, row["latitude"], row["longitude"]):
        return False
    return (
        abs(row["latitude"] - new.latitude) <= NEARBY_DEGREES
        and abs(row["longitude"] - new.longitude) <= NEARBY_DEGREES
    )


async def flag_after_commitment(tx: Tx, new: NewComplaint, number: str, *, now: datetime) -> list[str]:
    """At intake: the resident's earlier cases closed by commitment on the same matter, put on the new case's
    ledger for staff (the case is filed as any other). Read through the index on openid."""
    if not new.openid:
        return []
    rows = await tx.all(
        "SELECT number, category, place_label, latitude, longitude FROM cases "
        "WHERE openid = :openid AND commitment_at IS NOT NULL AND number <> :number ORDER BY id DESC LIMIT 50",
        openid=new.openid,
        number=number,
    )
    earlier = [r["number"] for r in rows if _same_matter(new, r)]
    if earlier:
        case_id = await tx.val("SELECT id FROM cases WHERE number = :number", number=number)
        await add_ledger(tx, case_id, now, "system", AFTER_COMMITMENT, note="、".join(earlier))
    return earlier
