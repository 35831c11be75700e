"""Working days: the week (Monday–Friday) corrected by the office's calendar of public holidays and the
make-up working weekends (调休), which change every year and so are data (table calendar_days)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from storage.fast import Tx

KINDS = ("holiday", "workday")


def is_working(day: date, overrides: dict[date, str]) -> bool:
    kind = overrides.get(day)
    if kind is not None:
        return kind == "workday"
    return day.weekday() < 5


def add_working_days(start: date, days: int, overrides: dict[date, str]) -> date:
    """The `days`-th working day after `start` (start itself never counts)."""
    day, left = start, days
    while left > 0:
        day += timedelta(days=1)
        if is_working(day, overrides):
            left -= 1
    return day


async def overrides(tx: Tx, first: date, last: date) -> dict[date, str]:
    rows = await tx.all(
        "SELECT day, kind FROM calendar_days WHERE day >= :first AND day <= :last",
        first=first.isoformat(),
        last=last.isoformat(),
    )
    return {date.fromisoformat(r["day"]): r["kind"] for r in rows}


async def add_days(tx: Tx, start: datetime, days: int, *, working: bool, tz: ZoneInfo) -> datetime:
    """A deadline `days` after `start`: natural days, or working days through the calendar (the same local
    time of day on the last working day)."""
    if not working:
        return start + timedelta(days=days)
    local = start.astimezone(tz)
    # Even the longest Chinese holiday run cannot stretch n working days beyond 3n + 30 natural days.
    found = await overrides(tx, local.date(), local.date() + timedelta(days=days * 3 + 30))
    end = add_working_days(local.date(), days, found)
    return datetime.combine(end, local.timetz()).astimezone(start.tzinfo)


@dataclass(frozen=True)
class Day:
    day: date
    kind: str


class BadLine(ValueError):
    def __init__(self, line: int, error: str):
        super().__init__(f"line {line}: {error}")
        self.line, self.error = line, error


def parse_csv(text: str) -> list[Day]:
    """`date,kind` lines (kind holiday|workday); a header line and blank lines are allowed."""
    out: list[Day] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() in ("date", "day", "日期"):
            continue
        if len(cells) < 2:
            raise BadLine(number, "need date,kind")
        try:
            day = date.fromisoformat(cells[0])
        except ValueError:
            raise BadLine(number, f"not a date: {cells[0]!r}") from None
        kind = cells[1].lower()
        if kind not in KINDS:
            raise BadLine(number, f"kind must be holiday or workday, got {cells[1]!r}")
        out.append(Day(day, kind))
    return out


async def store_days(tx: Tx, days: list[Day]) -> int:
    """Insert or replace the given days (a re-import corrects the earlier one)."""
    for d in days:
        await tx.run(
            "INSERT INTO calendar_days (day, kind) VALUES (:day, :kind) "
            "ON CONFLICT (day) DO UPDATE SET kind = excluded.kind",
            day=d.day.isoformat(),
            kind=d.kind,
        )
    return len(days)


async def year(tx: Tx, year: int) -> list[Day]:
    rows = await tx.all(
        "SELECT day, kind FROM calendar_days WHERE day >= :first AND day <= :last ORDER BY day",
        first=f"{year:04d}-01-01",
        last=f"{year:04d}-12-31",
    )
    return [Day(date.fromisoformat(r["day"]), r["kind"]) for r in rows]
