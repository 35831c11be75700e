"""People's mediation (人民调解, 访调衔接) as a case's handling route: the mediators (people's mediators, village
cadres, resident representatives), the sessions with their date and outcome, and the result.

A mediation starts while the case is being handled (accepted · assigned · in_progress · reopened), one open
mediation per case; its sessions may go on after the case was replied to. Its status never moves the case's own
status except at the end:

agreed   the terms recorded and the signed agreement (case_files kind "agreement", attached since the mediation
         started) required: the case is closed through lifecycle's mediate_close move (close_reason 调解结案), the
         resident told and asked to rate it like any closed case (bot/dialogs/rating.py).
partial  the terms agreed so far recorded; the case stays in ordinary handling, its status unchanged.
failed   why it failed recorded (in `terms`, and on the ledger as mediation_failed); the case returns to ordinary
         handling with its status unchanged — it never left it: replying, closing, extending go on as before.

Every step is a ledger entry. A partial or failed mediation is over: a new one may be started later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.clock import Clock
from bot.config import Settings
from bot.services import deadlines, lifecycle
from bot.services.cases import add_ledger
from bot.texts import Texts
from storage.fast import Tx, js, unjs

# The statuses in which a mediation may be started (the handling clock's).
HANDLING = deadlines.RUNNING[deadlines.HANDLE]
RESULTS = ("agreed", "partial", "failed")
NAME_CHARS, ROLE_CHARS, TEXT_CHARS = 64, 64, 4000
_SPACE = re.compile(r"[\s\u3000]+")


class MediationRefused(Exception):
    """The step is not allowed or incomplete; the message says why, for the operator."""


@dataclass(frozen=True)
class Session:
    id: int
    held_at: datetime
    outcome: str
    recorded_by: str
    created_at: datetime


@dataclass(frozen=True)
class Mediation:
    id: int
    case_id: int
    status: str  # open · agreed · partial · failed
    mediators: list[dict]
    terms: str | None  # the agreed terms, or for a failed mediation why it failed
    started_by: str
    started_at: datetime
    ended_at: datetime | None
    sessions: list[Session] = field(default_factory=list)


def parse_mediators(text: str, texts: Texts) -> list[dict]:
    """One mediator a line, "姓名 角色" (the role optional: 人民调解员 by default)."""
    found = []
    for line in (text or "").splitlines():
        parts = _SPACE.split(line.strip(), maxsplit=1)
        if not parts or not parts[0]:
            continue
        name = parts[0][:NAME_CHARS]
        role = (parts[1].strip() if len(parts) > 1 else "")[:ROLE_CHARS] or texts("mediation.default_role")
        found.append({"name": name, "role": role})
    return found


async def _case(tx: Tx, number: str, texts: Texts):
    case = await tx.one(
        "SELECT id, number, status FROM cases WHERE number = :number" + ("" if tx.is_sqlite else " FOR UPDATE"),
        number=number,
    )
    if case is None:
        raise MediationRefused(texts("lifecycle.not_found", number=number))
    return case


async def _open(tx: Tx, case, texts: Texts):
    row = await tx.one(
        "SELECT id, mediators, started_at FROM mediations WHERE case_id = :id AND status = 'open' "
        "ORDER BY id DESC LIMIT 1",
        id=case["id"],
    )
    if row is None:
        raise MediationRefused(texts("mediation.none_open", number=case["number"]))
    if case["status"] not in lifecycle.OPEN:
        raise MediationRefused(
            texts("mediation.case_not_open", number=case["number"], status=texts(f"status.{case['status']}"))
        )
    return row


def _names(mediators: list[dict]) -> str:
    return "、".join(f"{m['name']}（{m['role']}）" for m in mediators)


async def start(tx: Tx, number: str, mediators: list[dict], *, by: str, now: datetime, texts: Texts) -> int:
    """Mediation becomes the case's handling route; returns the mediation's id."""
    case = await _case(tx, number, texts)
    if case["status"] not in HANDLING:
        status = texts(f"status.{case['status']}")
        raise MediationRefused(texts("mediation.not_handling", number=number, status=status))
    if not mediators:
        raise MediationRefused(texts("mediation.mediators_required"))
    if await tx.val("SELECT id FROM mediations WHERE case_id = :id AND status = 'open'", id=case["id"]):
        raise MediationRefused(texts("mediation.already_open", number=number))
    mediation_id = await tx.val(
        "INSERT INTO mediations (case_id, status, mediators, started_by, started_at) "
        "VALUES (:case, 'open', :mediators, :by, :now) RETURNING id",
        case=case["id"],
        mediators=js(mediators),
        by=by,
        now=tx.ts(now),
    )
    await add_ledger(tx, case["id"], now, by, "mediation_started", note=_names(mediators))
    return mediation_id


async def add_mediator(tx: Tx, number: str, mediator: dict, *, by: str, now: datetime, texts: Texts) -> None:
    case = await _case(tx, number, texts)
    row = await _open(tx, case, texts)
    if not (mediator.get("name") or "").strip():
        raise MediationRefused(texts("mediation.mediators_required"))
    await tx.run(
        "UPDATE mediations SET mediators = :mediators WHERE id = :id",
        mediators=js([*(unjs(row["mediators"]) or []), mediator]),
        id=row["id"],
    )
    await add_ledger(tx, case["id"], now, by, "mediator_added", note=_names([mediator]))


async def add_session(
    tx: Tx, number: str, held_at: datetime, outcome: str, *, by: str, now: datetime, texts: Texts, settings: Settings
) -> int:
    """A mediation session (调解会谈): when it was held and what came of it."""
    case = await _case(tx, number, texts)
    row = await _open(tx, case, texts)
    outcome = (outcome or "").strip()[:TEXT_CHARS]
    if not outcome:
        raise MediationRefused(texts("mediation.outcome_required"))
    if held_at > now:
        raise MediationRefused(texts("mediation.session_future"))
    session_id = await tx.val(
        "INSERT INTO mediation_sessions (mediation_id, held_at, outcome, recorded_by, created_at) "
        "VALUES (:mediation, :held, :outcome, :by, :now) RETURNING id",
        mediation=row["id"],
        held=tx.ts(held_at),
        outcome=outcome,
        by=by,
        now=tx.ts(now),
    )
    day = held_at.astimezone(settings.tz).strftime("%Y-%m-%d")
    await add_ledger(tx, case["id"], now, by, "mediation_session", note=f"{day}：{outcome}")
    return session_id


async def conclude(
    tx: Tx, number: str, result: str, terms: str, *, by: str, clock: Clock, settings: Settings, texts: Texts
) -> str:
    """The mediation's result (agreed · partial · failed); returns the case's status afterwards."""
    now = clock.now()
    case = await _case(tx, number, texts)
    row = await _open(tx, case, texts)
    terms = (terms or "").strip()[:TEXT_CHARS]
    if result not in RESULTS:
        raise MediationRefused(texts("mediation.bad_result"))
    if not terms:
        raise MediationRefused(texts(f"mediation.{'reason' if result == 'failed' else 'terms'}_required"))
    if result == "agreed":
        signed = await tx.val(
            "SELECT id FROM case_files WHERE case_id = :id AND kind = 'agreement' AND created_at >= :since LIMIT 1",
            id=case["id"],
            since=row["started_at"],
        )
        if signed is None:
            raise MediationRefused(texts("mediation.agreement_required"))
    await tx.run(
        "UPDATE mediations SET status = :result, terms = :terms, ended_at = :now WHERE id = :id AND status = 'open'",
        result=result,
        terms=terms,
        now=tx.ts(now),
        id=row["id"],
    )
    await add_ledger(tx, case["id"], now, by, f"mediation_{result}", note=terms)
    if result != "agreed":
        return case["status"]
    # The close itself is a lifecycle move, so the graph (which statuses may close this way) lives in one place.
    request = lifecycle.Request(action="mediate_close", number=number, by=by, reason=lifecycle.MEDIATED)
    try:
        moved = await lifecycle.move(tx, request, clock=clock, settings=settings, texts=texts)
    except lifecycle.MoveRefused as exc:
        raise MediationRefused(str(exc)) from exc
    return moved.to_status


async def for_case(tx: Tx, case_id: int) -> list[Mediation]:
    """The case's mediations, oldest first, each with its sessions."""
    rows = await tx.all(
        "SELECT id, case_id, status, mediators, terms, started_by, started_at, ended_at FROM mediations "
        "WHERE case_id = :id ORDER BY id",
        id=case_id,
    )
    if not rows:
        return []
    sessions: dict[int, list[Session]] = {}
    for s in await tx.all(
        "SELECT s.id, s.mediation_id, s.held_at, s.outcome, s.recorded_by, s.created_at FROM mediation_sessions s "
        "JOIN mediations m ON m.id = s.mediation_id WHERE m.case_id = :id ORDER BY s.held_at, s.id",
        id=case_id,
    ):
        sessions.setdefault(s["mediation_id"], []).append(
            Session(s["id"], tx.dt(s["held_at"]), s["outcome"], s["recorded_by"], tx.dt(s["created_at"]))
        )
    return [
        Mediation(
            r["id"],
            r["case_id"],
            r["status"],
            unjs(r["mediators"]) or [],
            r["terms"],
            r["started_by"],
            tx.dt(r["started_at"]),
            tx.dt(r["ended_at"]),
            sessions.get(r["id"], []),
        )
        for r in rows
    ]
