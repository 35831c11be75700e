"""Joint dispatch (街道吹哨、部门报到) for operators: `frontdoor cases summon|checkin NUMBER …` and
`frontdoor dispatch list [--late] [--json]`."""

from __future__ import annotations

import argparse
import asyncio

from bot.cases_cli import print_json, reading, write_once
from bot.config import URGENCIES, Settings
from bot.texts import Texts


def register(cases_sub, sub) -> None:
    """Add the commands to `frontdoor cases` (its subparsers) and `frontdoor` (its subparsers)."""
    summon = cases_sub.add_parser("summon", help="吹哨: summon units to the case; each must check in in time")
    summon.add_argument("number")
    summon.add_argument("--unit", action="append", required=True, help="a unit summoned (repeatable)")
    summon.add_argument("--urgency", required=True, choices=URGENCIES, help="蓝 / 黄 / 红")
    summon.add_argument("--by", required=True, help="the operator doing it (recorded on the ledger)")
    summon.add_argument("--reason", help="why the units are summoned")
    summon.set_defaults(func=cmd_summon)
    checkin = cases_sub.add_parser("checkin", help="报到: a summoned unit has come")
    checkin.add_argument("number")
    checkin.add_argument("--unit", required=True)
    checkin.add_argument("--by", required=True, help="the operator recording it")
    checkin.set_defaults(func=cmd_checkin)

    dispatch = sub.add_parser("dispatch", help="joint dispatch: summoned units, their check-ins, late ones")
    dispatch.add_argument("action", choices=["list"])
    dispatch.add_argument("--late", action="store_true", help="only units that checked in late or not at all")
    dispatch.add_argument("--json", action="store_true")
    dispatch.set_defaults(func=cmd_dispatch)


def _prepared(args: argparse.Namespace) -> tuple[Settings, Texts] | None:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    return (settings, texts) if _database_ready(settings, texts) else None


def _number(settings: Settings, number: str) -> str:
    from bot.services.cases import find_number

    return find_number(number, settings.complaint.case_number_prefix) or number


def _local(settings: Settings, moment) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def cmd_summon(args) -> int:
    if (ready := _prepared(args)) is None:
        return 2
    settings, texts = ready
    return asyncio.run(
        summon(
            settings,
            texts,
            _number(settings, args.number),
            args.unit,
            urgency=args.urgency,
            by=args.by,
            reason=args.reason,
        )
    )


def cmd_checkin(args) -> int:
    if (ready := _prepared(args)) is None:
        return 2
    settings, texts = ready
    return asyncio.run(checkin(settings, texts, _number(settings, args.number), args.unit, by=args.by))


def cmd_dispatch(args) -> int:
    if (ready := _prepared(args)) is None:
        return 2
    settings, texts = ready
    return asyncio.run(list_summons(settings, texts, late_only=args.late, as_json=args.json))


async def summon(
    settings: Settings, texts: Texts, number: str, units: list[str], *, urgency: str, by: str, reason: str | None
) -> int:
    from bot.clock import Clock
    from bot.services import dispatch

    code, done = await write_once(
        settings,
        lambda tx: dispatch.summon(
            tx, number, units, urgency=urgency, by=by, reason=reason, now=Clock().now(), settings=settings, texts=texts
        ),
        (dispatch.DispatchRefused,),
    )
    if not code:
        units_text = "、".join(done.units)
        print(
            texts(
                "dispatch.summoned", number=number, urgency=urgency, units=units_text, due=_local(settings, done.due_at)
            )
        )
    return code


async def checkin(settings: Settings, texts: Texts, number: str, unit: str, *, by: str) -> int:
    from bot.clock import Clock
    from bot.services import dispatch

    code, done = await write_once(
        settings,
        lambda tx: dispatch.check_in(tx, number, unit, by=by, now=Clock().now(), settings=settings, texts=texts),
        (dispatch.DispatchRefused,),
    )
    if not code:
        late = texts("dispatch.checked_in_late") if done.late else ""
        print(texts("dispatch.checked_in", unit=done.unit, number=number, late=late))
    return code


def _state(s: dict) -> str:
    if s["status"] == "checked_in":
        return "checked_in_late" if s["late"] else "checked_in"
    if s["status"] == "waiting" and s["late"]:
        return "late"
    return s["status"]


async def list_summons(settings: Settings, texts: Texts, *, late_only: bool, as_json: bool) -> int:
    from bot.services import dispatch

    async with reading(settings) as tx:
        found = await dispatch.listing(tx, late_only=late_only)
    if as_json:
        times = ("summoned_at", "due_at", "checked_in_at", "escalated_at")
        return print_json(
            [{**s, "state": _state(s), **{k: s[k].isoformat() if s[k] else None for k in times}} for s in found]
        )
    for s in found:
        escalated = texts("dispatch.escalated", at=_local(settings, s["escalated_at"])) if s["escalated_at"] else ""
        print(
            texts(
                "dispatch.line",
                number=s["number"],
                unit=s["unit"],
                urgency=s["urgency"],
                summoned=_local(settings, s["summoned_at"]),
                due=_local(settings, s["due_at"]),
                state=texts(f"dispatch.state.{_state(s)}"),
                escalated=escalated,
            )
        )
    if not found:
        print(texts("dispatch.none_late" if late_only else "dispatch.none"))
    return 0
