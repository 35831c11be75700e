"""The case actions of the console and the JSON API: one table from an action and its fields to the services
the CLI calls too. Who may take which action is bot/console/roles.py's business, checked before this runs."""

from __future__ import annotations

import re
from datetime import date, datetime, time

from bot.clock import Clock
from bot.config import Settings
from bot.services import dispatch, inbox, lifecycle, longrun, mediation, routing
from bot.services.cases import add_ledger
from bot.services.operators import Operator
from bot.texts import Texts
from storage.fast import Tx

_LIST_SPLIT = re.compile(r"[、,，;；\s]+")


class FormError(Exception):
    """A field is missing or malformed; the message says which, for the operator."""


# What an action may be refused with: the operator is told why, nothing is changed.
REFUSALS = (
    FormError,
    lifecycle.MoveRefused,
    dispatch.DispatchRefused,
    longrun.LongRunRefused,
    mediation.MediationRefused,
)


def split_list(value: str) -> list[str]:
    """Unit names as people type them: separated by 、 , ， ; or spaces."""
    return [part for part in _LIST_SPLIT.split(value or "") if part]


async def perform(
    tx: Tx,
    action: str,
    case: inbox.CaseFile,
    operator: Operator,
    fields: dict[str, str],
    *,
    clock: Clock,
    settings: Settings,
    texts: Texts,
) -> None:
    """Take `action` on the case for the operator with the form's `fields`, in the caller's transaction. The
    caller has checked that the operator may see the case and take the action (bot/console/roles.py)."""
    number, by = case.number, operator.name

    def need(name: str) -> str:
        value = fields.get(name, "")
        if not value:
            raise FormError(texts("console.form.required", field=texts(f"console.form.{name}")))
        return value

    async def move(**kw) -> None:
        request_ = lifecycle.Request(action=action, number=number, by=by, **kw)
        await lifecycle.move(tx, request_, clock=clock, settings=settings, texts=texts)

    if action in ("accept", "start", "close"):
        await move()
    elif action in ("refuse", "return", "reopen"):
        await move(reason=need("reason"))
    elif action == "assign":
        await move(unit=need("unit"), co_units=split_list(fields.get("co_units", "")))
    elif action == "reply":
        await move(text=need("text"))
    elif action == "merge":
        await move(into=need("into").upper())
    elif action == "extend":
        days_text = need("days")
        limit = settings.deadlines.extension_max_days
        if not days_text.isdigit() or not 1 <= int(days_text) <= limit:
            raise FormError(texts("console.form.bad_days", max=limit))
        await move(reason=need("reason"), days=int(days_text))
    elif action == "route":
        await routing.route(tx, number, by=by, clock=clock, settings=settings, texts=texts)
    elif action == "tier":
        await routing.set_tier(tx, number, need("tier"), by=by, clock=clock, settings=settings, texts=texts)
    elif action == "summon":
        await dispatch.summon(
            tx,
            number,
            split_list(need("units")),
            urgency=need("urgency"),
            by=by,
            reason=fields.get("reason") or None,
            now=clock.now(),
            settings=settings,
            texts=texts,
        )
    elif action == "checkin":
        # A unit handler checks in for their own unit; staff may record any summoned unit's arrival.
        unit = operator.unit if operator.role == "unit" else need("unit")
        await dispatch.check_in(tx, number, unit or "", by=by, now=clock.now(), settings=settings, texts=texts)
    elif action == "note":
        await add_ledger(tx, case.id, clock.now(), by, "noted", note=need("note"))
    elif action == "leader":
        await longrun.set_leader(tx, number, need("leader"), by=by, now=clock.now(), texts=texts)
    elif action == "commit_close":  # the console posts it with the file to its own route (bot/console/longrun.py)
        raise FormError(texts("longrun.commitment_required"))
    elif action.startswith("mediation_"):
        await _mediation(tx, action, number, by, fields, clock=clock, settings=settings, texts=texts)
    else:  # pragma: no cover - CASE_ACTIONS and this table are one list
        raise FormError(action)


async def _mediation(
    tx: Tx, action: str, number: str, by: str, fields: dict[str, str], *, clock: Clock, settings: Settings, texts: Texts
) -> None:
    """人民调解 (roles.MEDIATION_ACTIONS): the service checks what the form must hold and says what is missing."""
    now = clock.now()
    if action == "mediation_start":
        found = mediation.parse_mediators(fields.get("mediators", ""), texts)
        await mediation.start(tx, number, found, by=by, now=now, texts=texts)
    elif action == "mediation_mediator":
        found = mediation.parse_mediators(fields.get("mediator", ""), texts)
        await mediation.add_mediator(tx, number, found[0] if found else {}, by=by, now=now, texts=texts)
    elif action == "mediation_session":
        held = _local_day(fields.get("held_at", ""), settings)
        if held is None:
            raise FormError(texts("mediation.bad_date"))
        outcome = fields.get("outcome", "")
        await mediation.add_session(tx, number, held, outcome, by=by, now=now, texts=texts, settings=settings)
    elif action == "mediation_conclude":
        result, terms = fields.get("result", ""), fields.get("terms", "")
        await mediation.conclude(tx, number, result, terms, by=by, clock=clock, settings=settings, texts=texts)
    else:  # pragma: no cover - MEDIATION_ACTIONS and this table are one list
        raise FormError(action)


def _local_day(value: str, settings: Settings) -> datetime | None:
    """2026-03-01 (an <input type=date>) as the start of that day in the office's time zone."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None
    return datetime.combine(day, time(), tzinfo=settings.tz)
