"""`frontdoor deadlines list` for supervisors and `frontdoor calendar import|list` for the working-day calendar."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bot.cases_cli import print_json, reading
from bot.config import Settings
from bot.services import calendar
from bot.services.deadlines import DUE_COLUMN, RUNNING
from bot.texts import Texts
from storage.fast import Tx, open_store

_LIST = """
SELECT number, status, accept_due_at, handle_due_at, deadline_state, escalated_at, extended_at, lead_unit
FROM cases WHERE status IN ({statuses}){state} ORDER BY id"""


async def running_clocks(tx: Tx, *, states: list[str]) -> list[dict]:
    """Every case whose clock runs (pending: acceptance; being handled: handling), soonest deadline first."""
    statuses = ", ".join(f"'{s}'" for clock in RUNNING.values() for s in sorted(clock))
    state = " AND deadline_state IN ({})".format(", ".join(f"'{s}'" for s in states)) if states else ""
    out = []
    for r in await tx.all(_LIST.format(statuses=statuses, state=state)):
        clock = "accept" if r["status"] in RUNNING["accept"] else "handle"
        due = tx.dt(r[DUE_COLUMN[clock]])
        out.append(
            {
                "number": r["number"],
                "status": r["status"],
                "clock": clock,
                "due_at": due,
                "deadline_state": r["deadline_state"],
                "escalated_at": tx.dt(r["escalated_at"]),
                "extended": r["extended_at"] is not None,
                "lead_unit": r["lead_unit"],
            }
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda c: (c["due_at"] or far, c["number"]))


def _local(settings: Settings, moment: datetime | None) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


async def list_deadlines(settings: Settings, texts: Texts, *, due_soon: bool, overdue: bool, as_json: bool) -> int:
    states = [s for s, on in (("due_soon", due_soon), ("overdue", overdue)) if on]
    async with reading(settings) as tx:
        found = await running_clocks(tx, states=states)
    if as_json:
        return print_json(
            [
                {
                    **c,
                    "due_at": c["due_at"].isoformat() if c["due_at"] else None,
                    "escalated_at": c["escalated_at"].isoformat() if c["escalated_at"] else None,
                }
                for c in found
            ]
        )
    for c in found:
        escalated = texts("cli.deadline_escalated", at=_local(settings, c["escalated_at"])) if c["escalated_at"] else ""
        print(
            texts(
                "cli.deadline_line",
                number=c["number"],
                status=texts(f"status.{c['status']}"),
                clock=texts(f"clock.{c['clock']}"),
                due=_local(settings, c["due_at"]),
                state=texts(f"deadline_state.{c['deadline_state']}"),
                escalated=escalated,
            )
        )
    if not found:
        print(texts("cli.no_deadlines"))
    return 0


async def import_calendar(settings: Settings, texts: Texts, text: str) -> int:
    """The CSV's text (date,kind lines): all days stored, or none when a line is wrong."""
    try:
        days = calendar.parse_csv(text)
    except calendar.BadLine as exc:
        print(texts("cli.calendar_bad_line", line=exc.line, error=exc.error), file=sys.stderr)
        return 1
    store = open_store(settings.database.url, pool_size=1)
    try:
        async with store.write() as tx:
            count = await calendar.store_days(tx, days)
    finally:
        await store.close()
    holidays = sum(d.kind == "holiday" for d in days)
    print(texts("cli.calendar_imported", count=count, holidays=holidays, workdays=count - holidays))
    return 0


async def list_calendar(settings: Settings, texts: Texts, year: int) -> int:
    async with reading(settings) as tx:
        days = await calendar.year(tx, year)
    weekdays = texts("cli.weekdays").split()
    for d in days:
        print(
            texts(
                "cli.calendar_line",
                day=d.day.isoformat(),
                weekday=weekdays[d.day.weekday()],
                kind=texts(f"calendar_kind.{d.kind}"),
            )
        )
    if not days:
        print(texts("cli.calendar_empty", year=year))
    return 0
