"""The lawful moves of a case (信访 workflow), each a ledger entry, the resident told of those they see.

pending ─accept→ accepted ─assign→ assigned ─start→ in_progress ─reply→ replied ─close→ closed
   └─refuse→ refused          ↑  └─return (退回, within a window)─┘                 │
                              └──────────── reopen (发回重办) ←── replied / closed ──┘
Any open case can be merged (并案) into another open case, or withdrawn (撤回) by its resident.
While being handled, a case's handling time can be extended (延期) once; its status stays as it is.
A people's mediation agreement (bot/services/mediation.py) closes a case being handled or replied: mediate_close,
close_reason 调解结案, the resident asked to rate it like any closed case.

Every move is checked against this graph and written with `WHERE status = <the status we saw>`, so two people
acting at once cannot both move the same case: the second gets a clear error instead of a silent overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.config import Settings
from bot.services import deadlines
from bot.services.cases import add_ledger
from bot.services.outbox import enqueue_text
from bot.texts import Texts
from storage.fast import Tx, js, unjs

OPEN = frozenset({"pending", "accepted", "assigned", "in_progress", "replied", "reopened"})
COMMITMENT_REASON = "息诉罢访"  # cases.close_reason of a case closed by commit_close


@dataclass(frozen=True)
class Move:
    sources: frozenset[str]
    target: str | None  # None: the case keeps its status (the move is still ledgered)
    ledger: str  # the ledger entry's action (texts [ledger])
    notice: str | None = None  # what the resident is told (texts [notice]), if anything
    needs_reason: bool = False
    # Made only by this service (bot/services/<name>.py), which checks its own conditions first: not a CLI command.
    service: str | None = None


# The close_reason of a case closed by a mediation agreement (cases.close_reason).
MEDIATED = "调解结案"

MOVES: dict[str, Move] = {
    "accept": Move(frozenset({"pending"}), "accepted", "accepted", "accepted"),
    "refuse": Move(frozenset({"pending"}), "refused", "refused", "refused", needs_reason=True),
    "assign": Move(frozenset({"accepted", "assigned", "reopened"}), "assigned", "assigned", "assigned"),
    "return": Move(frozenset({"assigned"}), "accepted", "returned", needs_reason=True),
    "start": Move(frozenset({"assigned", "reopened"}), "in_progress", "started"),
    "reply": Move(frozenset({"in_progress"}), "replied", "replied", "replied"),
    "close": Move(frozenset({"replied"}), "closed", "closed", "closed"),
    "reopen": Move(frozenset({"replied", "closed"}), "reopened", "reopened", "reopened", needs_reason=True),
    "mediate_close": Move(
        frozenset({"accepted", "assigned", "in_progress", "reopened", "replied"}),
        "closed",
        "closed_mediated",
        "closed_mediated",
        service="mediation",
    ),
    "merge": Move(OPEN, "merged", "merged", "merged"),
    "withdraw": Move(OPEN, "withdrawn", "withdrawn", "withdrawn"),
    "extend": Move(deadlines.RUNNING[deadlines.HANDLE], None, "extended", "extended", needs_reason=True),
    # 息诉罢访: closed on the resident's signed commitment, attached first (bot/services/longrun.py).
    # Only a case that was accepted: a commitment ends a matter the office took up, not one it never did.
    "commit_close": Move(OPEN - {"pending"}, "closed", "commit_closed", "commit_closed", service="longrun"),
}


class MoveRefused(Exception):
    """The move is not allowed (or incomplete); the message says why, for the operator or resident."""


@dataclass
class Request:
    action: str
    number: str
    by: str
    reason: str | None = None
    unit: str | None = None
    co_units: list[str] = field(default_factory=list)
    text: str | None = None
    into: str | None = None
    days: int | None = None  # extend: how many days (default: deadlines.extension_max_days)
    # Only this resident's own case (a resident withdrawing by chat).
    openid: str | None = None


@dataclass(frozen=True)
class Moved:
    number: str
    from_status: str
    to_status: str


_CASE = """SELECT id, number, openid, status, assigned_at, created_at, accepted_at, accept_due_at, handle_due_at,
    extended_at FROM cases WHERE number = :number"""


async def _load(tx: Tx, number: str, *, lock: bool):
    return await tx.one(_CASE + (" FOR UPDATE" if lock and not tx.is_sqlite else ""), number=number)


async def move(tx: Tx, req: Request, *, clock: Clock, settings: Settings, texts: Texts) -> Moved:
    """Apply one move to a case, or raise MoveRefused with the reason. The caller's transaction commits it
    together with its ledger entry and the resident's notice."""
    spec = MOVES[req.action]
    now = clock.now()
    action_name = texts(f"action.{req.action}")
    case = await _load(tx, req.number, lock=True)
    if case is None or (req.openid is not None and case["openid"] != req.openid):
        raise MoveRefused(texts("lifecycle.not_found", number=req.number))
    status = case["status"]
    if status not in spec.sources:
        raise MoveRefused(
            texts("lifecycle.not_allowed", number=req.number, status=texts(f"status.{status}"), action=action_name)
        )
    if spec.needs_reason and not (req.reason or "").strip():
        raise MoveRefused(texts("lifecycle.reason_required", action=action_name))
    target = spec.target or status
    changes, note, notice_values = await _changes(tx, req, case, now=now, settings=settings, texts=texts)

    columns = ", ".join(f"{name} = :{name}" for name in changes)
    if req.action == "reopen":  # how often it was reopened: a long-running case (积案) at long_running_reopens
        columns += (", " if columns else "") + "reopen_count = reopen_count + 1"
    updated = await tx.run(
        f"UPDATE cases SET status = :to_status, updated_at = :now{', ' if columns else ''}{columns} "
        "WHERE id = :id AND status = :from_status",
        to_status=target,
        now=tx.ts(now),
        id=case["id"],
        from_status=status,
        **changes,
    )
    if updated != 1:
        raise MoveRefused(texts("lifecycle.changed", number=req.number))
    if "co_units" in changes:
        # The co-handling units as rows too, so that a unit's cases are found through an index.
        await tx.run("DELETE FROM case_co_units WHERE case_id = :id", id=case["id"])
        for unit in unjs(changes["co_units"]):
            await tx.run("INSERT INTO case_co_units (case_id, unit) VALUES (:id, :unit)", id=case["id"], unit=unit)
    await add_ledger(tx, case["id"], now, req.by, spec.ledger, from_status=status, to_status=target, note=note)
    await _clocks(tx, req.action, case, changes, now=now, settings=settings)
    # A resident acting in the chat sees the answer there; anyone else's move is pushed to them.
    if spec.notice and case["openid"] and req.openid is None:
        notice = texts(f"notice.{spec.notice}", number=req.number, hotline=settings.complaint.hotline, **notice_values)
        # Outside the customer-service window the notice goes as a template message: it needs these.
        await enqueue_text(
            tx,
            clock,
            case["openid"],
            notice,
            notice=spec.notice,
            case_number=req.number,
            status_text=texts(f"status.{target}"),
        )
    return Moved(req.number, status, target)


async def _clocks(tx: Tx, action: str, case, changes: dict, *, now: datetime, settings: Settings) -> None:
    """Start or move the handling clock's reminder rows in the move's transaction. Rows of a clock that
    stopped are retired when they come due (bot/services/deadlines.py)."""
    if action in ("accept", "extend", "reopen"):
        due = tx.dt(changes.get("handle_due_at", case["handle_due_at"]))
        start = now if action == "reopen" else tx.dt(changes.get("accepted_at", case["accepted_at"]))
        if due is not None and start is not None:
            await deadlines.arm(tx, case["id"], deadlines.HANDLE, start=start, due=due, now=now, settings=settings)


async def _changes(tx: Tx, req: Request, case, *, now: datetime, settings: Settings, texts: Texts):
    """The columns a move sets, its ledger note, and the values its notice needs."""
    life = settings.lifecycle
    if req.action == "accept":
        due = await deadlines.due_after(tx, now, life.handling_days, settings)
        local_due = due.astimezone(settings.tz).strftime("%Y年%m月%d日")
        columns = {"accepted_at": tx.ts(now), "handle_due_at": tx.ts(due), "deadline_state": "ok"}
        return columns, None, {"due": local_due}
    if req.action == "extend":
        return await _extension(tx, req, case, now=now, settings=settings, texts=texts)
    if req.action == "assign":
        if not (req.unit or "").strip():
            raise MoveRefused(texts("lifecycle.unit_required"))
        co = list(dict.fromkeys(u for u in req.co_units if u and u != req.unit))
        note = "、".join([req.unit, *co])
        return {"lead_unit": req.unit, "co_units": js(co), "assigned_at": tx.ts(now)}, note, {"unit": req.unit}
    if req.action == "return":
        assigned_at = tx.dt(case["assigned_at"])
        window = timedelta(hours=life.return_window_hours)
        if assigned_at is None or now - assigned_at > window:
            raise MoveRefused(texts("lifecycle.return_too_late", hours=life.return_window_hours))
        return {"lead_unit": None, "co_units": js([]), "assigned_at": None}, req.reason, {}
    if req.action == "reply":
        if not (req.text or "").strip():
            raise MoveRefused(texts("lifecycle.text_required"))
        return {"reply_text": req.text}, req.text, {"text": req.text}
    if req.action == "close":
        return {"closed_at": tx.ts(now)}, req.reason, {}
    if req.action == "mediate_close":
        return {"closed_at": tx.ts(now), "close_reason": MEDIATED}, req.reason or MEDIATED, {}
    if req.action == "reopen":
        # 发回重办 is handled anew: a fresh handling period from now, not the old deadline already passed.
        due = await deadlines.due_after(tx, now, life.handling_days, settings)
        local_due = due.astimezone(settings.tz).strftime("%Y年%m月%d日")
        # A reopened case is no longer settled by its mediation or its commitment.
        columns = {
            "closed_at": None,
            "close_reason": None,
            "commitment_at": None,
            "handle_due_at": tx.ts(due),
            "deadline_state": "ok",
        }
        return columns, req.reason, {"reason": req.reason, "due": local_due}
    if req.action == "commit_close":
        signed = await tx.val(
            "SELECT filename FROM case_files WHERE case_id = :id AND kind = 'commitment' ORDER BY id DESC LIMIT 1",
            id=case["id"],
        )
        if signed is None:
            raise MoveRefused(texts("longrun.commitment_required"))
        columns = {"closed_at": tx.ts(now), "commitment_at": tx.ts(now), "close_reason": COMMITMENT_REASON}
        return columns, "：".join(x for x in (signed, (req.reason or "").strip()) if x), {}
    if req.action == "merge":
        target = await _merge_target(tx, req, case, texts)
        await add_ledger(tx, target["id"], now, req.by, "merged_in", note=req.number)
        return {"merged_into": target["number"]}, target["number"], {"into": target["number"]}
    return {}, req.reason, {"reason": req.reason or ""}


async def _extension(tx: Tx, req: Request, case, *, now: datetime, settings: Settings, texts: Texts):
    """The one extension (延期) of the handling time: at most deadlines.extension_max_days, with a reason."""
    most = settings.deadlines.extension_max_days
    days = most if req.days is None else req.days
    if not 1 <= days <= most:
        raise MoveRefused(texts("lifecycle.extend_days", max=most))
    if case["extended_at"] is not None:
        raise MoveRefused(texts("lifecycle.extend_once", number=req.number))
    old = tx.dt(case["handle_due_at"])
    if old is None:
        raise MoveRefused(texts("lifecycle.extend_no_due", number=req.number))
    due = await deadlines.due_after(tx, old, days, settings)
    local_due = due.astimezone(settings.tz).strftime("%Y年%m月%d日")
    columns = {"handle_due_at": tx.ts(due), "extended_at": tx.ts(now), "extension_days": days, "deadline_state": "ok"}
    note = f"+{days} → {due.astimezone(settings.tz).strftime('%Y-%m-%d %H:%M')}：{req.reason}"
    day_unit = texts(f"day_unit.{settings.deadlines.day_kind}")
    return columns, note, {"days": days, "due": local_due, "reason": req.reason, "day_unit": day_unit}


async def _merge_target(tx: Tx, req: Request, case, texts: Texts):
    if not req.into or req.into == case["number"]:
        raise MoveRefused(texts("lifecycle.merge_target", into=req.into or "", why=texts("lifecycle.merge_same")))
    target = await _load(tx, req.into, lock=True)
    if target is None:
        raise MoveRefused(texts("lifecycle.not_found", number=req.into))
    if target["status"] not in OPEN:
        raise MoveRefused(texts("lifecycle.merge_target", into=req.into, why=texts("lifecycle.merge_closed")))
    return target
