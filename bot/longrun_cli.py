"""`frontdoor cases long-running [--json]` (the supervisors' list of 积案) and `frontdoor cases leader NUMBER NAME
--by …` (the responsible leader, 包案领导)."""

from __future__ import annotations

import argparse
import asyncio

from bot.cases_cli import print_json, reading, write_once
from bot.config import Settings
from bot.texts import Texts


def register(cases_sub) -> None:
    """Add the commands to `frontdoor cases` (its subparsers)."""
    ls = cases_sub.add_parser("long-running", help="积案: open longer than fieldwork.long_running_days, or reopened")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    leader = cases_sub.add_parser("leader", help="包案领导: the leader responsible for a (long-running) case")
    leader.add_argument("number")
    leader.add_argument("name")
    leader.add_argument("--by", required=True, help="the operator doing it (recorded on the ledger)")
    leader.set_defaults(func=cmd_leader)


def _prepared(args: argparse.Namespace) -> tuple[Settings, Texts] | None:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    return (settings, texts) if _database_ready(settings, texts) else None


def cmd_list(args) -> int:
    if (ready := _prepared(args)) is None:
        return 2
    return asyncio.run(list_long_running(*ready, as_json=args.json))


def cmd_leader(args) -> int:
    if (ready := _prepared(args)) is None:
        return 2
    return asyncio.run(set_leader(*ready, args.number, args.name, by=args.by))


def _latest(texts: Texts, entry) -> str:
    if entry is None:
        return "-"
    action = texts(f"ledger.{entry.action}") if texts.has(f"ledger.{entry.action}") else entry.action
    return f"{action}：{entry.note}" if entry.note else action


async def list_long_running(settings: Settings, texts: Texts, *, as_json: bool, clock=None) -> int:
    from bot.clock import Clock
    from bot.services import longrun

    now = (clock or Clock()).now()
    async with reading(settings) as tx:
        found = await longrun.listing(tx, now, settings)
    if as_json:
        return print_json(
            [
                {
                    "number": c.number,
                    "status": c.status,
                    "category": c.category,
                    "place": c.place,
                    "created_at": c.created_at.isoformat(),
                    "age_days": c.age_days,
                    "reopen_count": c.reopen_count,
                    "leader": c.leader,
                    "lead_unit": c.lead_unit,
                    "visits": c.visits,
                    "latest": None
                    if c.latest is None
                    else {
                        "at": c.latest.at.isoformat(),
                        "actor": c.latest.actor,
                        "action": c.latest.action,
                        "note": c.latest.note,
                    },
                }
                for c in found
            ]
        )
    for c in found:
        print(
            texts(
                "longrun.cli_line",
                number=c.number,
                status=texts(f"status.{c.status}"),
                age=c.age_days,
                reopens=c.reopen_count,
                leader=c.leader or texts("longrun.none"),
                visits=c.visits,
                latest=_latest(texts, c.latest),
            )
        )
    if not found:
        print(texts("longrun.cli_none"))
    return 0


async def set_leader(settings: Settings, texts: Texts, number: str, name: str, *, by: str, clock=None) -> int:
    from bot.clock import Clock
    from bot.services import longrun
    from bot.services.cases import find_number

    number = find_number(number, settings.complaint.case_number_prefix) or number
    now = (clock or Clock()).now()
    code, _ = await write_once(
        settings,
        lambda tx: longrun.set_leader(tx, number, name, by=by, now=now, texts=texts),
        (longrun.LongRunRefused,),
    )
    if not code:
        print(texts("longrun.cli_leader_set", number=number, leader=" ".join(name.split())))
    return code
