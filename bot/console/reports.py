"""The dashboard (统计) and the ledger (台账) export, CSV and Excel.

Both are for the roles that read cases (bot/console/roles.py `sees_reports`), checked here on the server; a
unit handler's figures and files hold their unit's cases only. The charts are inline SVG drawn on the server:
the pages' Content-Security-Policy allows no script but the console's own and no inline style.

The export holds what identifies a resident only masked: the openid's first characters, the phone masked for
roles that may not see phones. Cells a spreadsheet would read as a formula (= + - @, tab, CR) get a leading
apostrophe. Each export is in the audit log with its period and row count.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import quote

from aiohttp import web
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from bot.console import keys, roles
from bot.console.auth import audit, message_page, refused, session_of
from bot.console.pages import render
from bot.console.security import HEADERS
from bot.services import areas, inbox, privacy, reports
from bot.texts import Texts

DEFAULT_DAYS = 30
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Cells a spreadsheet would take for a formula (CSV / formula injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_COLUMNS = (
    ("number", 18),
    ("received", 17),
    ("resident", 22),
    ("category", 14),
    ("place", 30),
    ("summary", 60),
    ("unit", 22),
    ("status", 10),
    ("accept_due", 17),
    ("handle_due", 17),
    ("closed", 17),
    ("rating", 20),
    # Last, so that the standard columns keep their places in the sheets offices already keep.
    ("grid", 40),
    # Visits (bot/services/visits.py): done with the case along, and those it was resolved on.
    ("visits", 10),
    ("visits_resolved", 10),
)
# Columns whose heading is in another section of the texts than [console.export].
_HEADINGS = {"visits": "console.visits.export_count", "visits_resolved": "console.visits.export_resolved"}
_DATE_COLUMNS = frozenset({"received", "accept_due", "handle_due", "closed"})
_DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
# Up to this many rows an Excel file is built in a thread of the server; a bigger one in a child process.
XLSX_IN_PROCESS_ROWS = 5_000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# Dates a period may name (far ones would overflow the time arithmetic), and the longest export: ten years.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100
MAX_EXPORT_DAYS = 3660


class PeriodError(Exception):
    """The period asked for cannot be read; the message says why, for the operator."""


def _read_period(request: web.Request, *, max_days: int | None) -> reports.Period:
    """?from=YYYY-MM-DD&to=YYYY-MM-DD in the office's time zone; by default the last 30 days up to today."""
    app = request.app
    texts, tz = app[keys.TEXTS], app[keys.SETTINGS].tz
    today = app[keys.CLOCK].now().astimezone(tz).date()
    given = {}
    for name in ("from", "to"):
        value = (request.query.get(name) or "").strip()
        if value:
            try:
                if not _DATE.match(value):
                    raise ValueError(value)
                given[name] = date.fromisoformat(value)
                if not EARLIEST_YEAR <= given[name].year <= LATEST_YEAR:
                    raise ValueError(value)
            except ValueError:
                raise PeriodError(texts("console.dashboard.bad_date", example=today.isoformat())) from None
    last = given.get("to", today)
    first = given.get("from", last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise PeriodError(texts("console.dashboard.bad_order"))
    limit = max_days if max_days is not None else MAX_EXPORT_DAYS
    if (last - first).days + 1 > limit:
        raise PeriodError(texts("console.dashboard.too_long", days=limit))
    return reports.period(first, last, tz)


async def _refused(request: web.Request, action: str) -> web.Response | None:
    """The page that says no, audited, unless this operator may see reports."""
    if roles.sees_reports(session_of(request).operator):
        return None
    return await refused(request, action)


# ---- the dashboard ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: float  # 0–100: the bar's length, the longest bar of its chart being 100
    share: str  # the percentage of the whole, as shown


@dataclass(frozen=True)
class DayBar:
    day: date
    count: int
    x: int
    y: float
    height: float


_DAY_WIDTH = 10  # the trend's SVG user units per day; the chart is 100 units high


def percent(part: int, whole: int) -> str:
    value = 100.0 * part / whole if whole else 0.0
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _bars(items: list[tuple[str, int]], whole: int) -> list[Bar]:
    peak = max((n for _, n in items), default=0)
    return [Bar(label, n, round(100.0 * n / peak, 1) if peak else 0.0, percent(n, whole)) for label, n in items]


def _trend(trend: list[tuple[date, int]]) -> list[DayBar]:
    peak = max((n for _, n in trend), default=0)
    out = []
    for i, (day, n) in enumerate(trend):
        height = round(95.0 * n / peak, 2) if peak else 0.0
        out.append(DayBar(day, n, i * _DAY_WIDTH + 1, round(100.0 - height, 2), height))
    return out


def _presets(today: date) -> list[tuple[str, date, date]]:
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    return [
        ("preset_7", today - timedelta(days=6), today),
        ("preset_30", today - timedelta(days=DEFAULT_DAYS - 1), today),
        ("preset_month", month, today),
        ("preset_last_month", last_month_end.replace(day=1), last_month_end),
        ("preset_year", today.replace(month=1, day=1), today),
    ]


def _grid_label(by_id: dict[int, areas.Area], grid_id: int | None) -> str:
    """A grid by its path (names repeat across communities); the bare id of one no longer in the tree."""
    if grid_id is None:
        return ""
    area = by_id.get(grid_id)
    return area.path if area is not None else f"#{grid_id}"


def _rate_text(rate: reports.Rate) -> str | None:
    return percent(rate.part, rate.whole) if rate.whole else None


async def dashboard(request: web.Request) -> web.Response:
    refused = await _refused(request, "dashboard")
    if refused is not None:
        return refused
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    operator = session_of(request).operator
    error, status = None, 200
    try:
        p = _read_period(request, max_days=reports.MAX_DAYS)
    except PeriodError as exc:
        error, status = str(exc), 400
        p = reports.last_days(clock.now(), settings.tz, DEFAULT_DAYS)
    unit = roles.report_scope(operator)
    async with app[keys.STORE].read() as tx:
        figures = await reports.figures(tx, p, unit=unit)
        tree = await areas.all_areas(tx) if figures.by_grid or figures.visits.done else []
    statuses = [s for s in inbox.STATUSES if figures.by_status.get(s)]
    statuses += sorted(s for s in figures.by_status if s not in inbox.STATUSES)
    status_items = [(texts(f"status.{s}") if texts.has(f"status.{s}") else s, figures.by_status[s]) for s in statuses]
    unassigned = texts("console.dashboard.unassigned")
    unit_bars = _bars([(u.unit or unassigned, u.received) for u in figures.by_unit], figures.received)
    by_id = {a.id: a for a in tree}
    grid_bars = _bars([(_grid_label(by_id, g.grid_id), g.received) for g in figures.by_grid], figures.received)
    rates = [
        ("accept_rate", figures.accepted_on_time),
        ("close_rate", figures.closed_on_time),
        ("satisfaction", figures.satisfied),
        ("repeat_rate", figures.repeats),
    ]
    today = clock.now().astimezone(settings.tz).date()
    period_query = {"from": p.first.isoformat(), "to": p.last.isoformat()}
    context = {
        "figures": figures,
        "period": p,
        "period_query": period_query,
        "error": error,
        "scoped": unit,
        "rates": [
            (name, rate, percent(rate.part, rate.whole) if rate.whole else None, round(rate.percent or 0.0, 1))
            for name, rate in rates
        ],
        "status_bars": _bars(status_items, figures.received),
        "category_bars": _bars(figures.by_category, figures.received),
        "units": list(zip(figures.by_unit, unit_bars, strict=True)),
        "grids": [
            (g, bar, by_id[g.grid_id].code if g.grid_id in by_id else None, _rate_text(g.satisfied))
            for g, bar in zip(figures.by_grid, grid_bars, strict=True)
        ],
        "trend": _trend(figures.trend),
        "trend_width": max(len(figures.trend), 1) * _DAY_WIDTH,
        "trend_peak": max((n for _, n in figures.trend), default=0),
        "presets": [(name, {"from": a.isoformat(), "to": b.isoformat()}) for name, a, b in _presets(today)],
        "visit_tables": _visit_tables(texts, figures.visits, by_id),
    }
    return render(request, "dashboard.html", context, status=status)


def _visit_tables(texts: Texts, fig, by_id: dict[int, areas.Area]) -> list[tuple[str, list]]:
    """The visit figures by unit, street and grid: (which, [(bar, count)])."""

    def area(key) -> str:
        return _grid_label(by_id, key) if key is not None else texts("console.visits.dash_no_area")

    out = []
    for name, counts, label in (
        ("unit", fig.by_unit, lambda key: key or texts("console.visits.dash_no_unit")),
        ("street", fig.by_street, area),
        ("grid", fig.by_grid, area),
    ):
        bars = _bars([(label(c.key), c.visits) for c in counts], fig.done)
        out.append((name, [(bar, c) for bar, c in zip(bars, counts, strict=True)]))
    return out


# ---- the ledger export ------------------------------------------------------------------------------------


def safe(text: str) -> str:
    """A cell no spreadsheet runs as a formula (OWASP: CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _resident(openid: str | None, phone: str | None, *, show_phone: bool) -> str:
    """Enough to tell residents apart, never the openid in full: its first 4 characters (fewer if it is short)."""
    parts = []
    if openid:
        parts.append(openid[: min(4, len(openid) // 2)] + "…")
    if phone:
        parts.append(phone if show_phone else roles.mask_phone(phone))
    return " ".join(parts)


class _Ledger:
    """One export's rows as cell values: text, or naive local datetimes (what a spreadsheet holds)."""

    def __init__(self, texts: Texts, tz, *, show_phone: bool, tree: list[areas.Area] | None = None):
        self.texts, self.tz, self.show_phone = texts, tz, show_phone
        self.ratings = texts.words("words.ratings")
        self.grids = {a.id: a for a in tree or []}

    def header(self) -> list[str]:
        return [self.texts(_HEADINGS.get(name, f"console.export.{name}")) for name, _ in _COLUMNS]

    def _local(self, moment: datetime | None) -> datetime | None:
        return moment.astimezone(self.tz).replace(tzinfo=None) if moment else None

    def _rating(self, row: reports.LedgerRow) -> str:
        if row.rating is None:
            return ""
        label = self.ratings[row.rating - 1] if 1 <= row.rating <= len(self.ratings) else str(row.rating)
        return f"{label}：{self._free(row, row.rating_comment)}" if row.rating_comment else label

    def _free(self, row: reports.LedgerRow, text: str | None) -> str:
        """What a resident typed: phone numbers in it hidden from a role that may not see them."""
        if self.show_phone or not text:
            return text or ""
        return privacy.hide_phones(text, mark=self.texts("privacy.phone_hidden"), known=row.contact_phone) or ""

    def values(self, row: reports.LedgerRow) -> list[str | datetime | None]:
        status = f"status.{row.status}"
        return [
            row.number,
            self._local(row.created_at),
            _resident(row.openid, row.contact_phone, show_phone=self.show_phone),
            row.category,
            self._free(row, row.place),
            self._free(row, " ".join((row.description or "").split())),
            row.lead_unit or "",
            self.texts(status) if self.texts.has(status) else row.status,
            self._local(row.accept_due_at),
            self._local(row.handle_due_at),
            self._local(row.closed_at),
            self._rating(row),
            _grid_label(self.grids, row.grid_id),
            str(row.visits),
            str(row.visits_resolved),
        ]


async def _batches(request: web.Request, p: reports.Period, unit: str | None, limit: int) -> AsyncIterator[list]:
    """The period's cases a batch at a time, each batch in its own short read (no read held while sending, and
    the event loop free for the webhook between batches)."""
    store = request.app[keys.STORE]
    after, left = None, limit
    while left > 0:
        async with store.read() as tx:
            rows = await reports.ledger_rows(tx, p, unit=unit, after=after, limit=min(reports.EXPORT_BATCH, left))
        if not rows:
            return
        yield rows
        left -= len(rows)
        after = (rows[-1].created_at, rows[-1].id)
        # SQLite's reads and a write that fits the socket's buffer never suspend: let the loop run others.
        await asyncio.sleep(0)


def disposition(name: str, fallback: str) -> str:
    """The Chinese file name for browsers that read RFC 6266's filename*, an ASCII one for the others."""
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def export_csv(request: web.Request) -> web.StreamResponse:
    return await _export(request, "csv")


async def export_xlsx(request: web.Request) -> web.StreamResponse:
    return await _export(request, "xlsx")


async def _export(request: web.Request, kind: str) -> web.StreamResponse:
    refused = await _refused(request, "export")
    if refused is not None:
        return refused
    app = request.app
    texts, settings = app[keys.TEXTS], app[keys.SETTINGS]
    operator = session_of(request).operator
    try:
        p = _read_period(request, max_days=None)
    except PeriodError as exc:
        return message_page(request, texts("console.bad_request", reason=str(exc)), 400)
    unit = roles.report_scope(operator)
    async with app[keys.STORE].read() as tx:
        total = await reports.ledger_count(tx, p, unit=unit)
        tree = await areas.all_areas(tx)
    cap = reports.EXPORT_MAX_ROWS
    capped = total > cap
    rows = min(total, cap)
    first, last = p.first.isoformat(), p.last.isoformat()
    if capped:
        name = texts("console.export.capped_file", first=first, last=last, count=cap)
        fallback = f"ledger_{first}_{last}_first{cap}"
    else:
        name, fallback = texts("console.export.file", first=first, last=last), f"ledger_{first}_{last}"
    detail = f"{kind} {first}~{last} rows={rows}" + (f" of {total}" if capped else "")
    await audit(request, "export", detail=detail + (f" unit={unit}" if unit else ""))
    ledger = _Ledger(texts, settings.tz, show_phone=roles.sees_phone(operator), tree=tree)
    note = texts("console.export.capped_note", total=total, count=cap) if capped else None
    headers = {
        **HEADERS,
        "Cache-Control": "no-store",
        "Content-Disposition": disposition(f"{name}.{kind}", f"{fallback}.{kind}"),
    }
    if kind == "csv":
        return await _send_csv(request, p, unit, rows, ledger, note, headers)
    body = await _build_xlsx(request, p, unit, rows, ledger, note)
    return web.Response(body=body, content_type=XLSX_TYPE, headers=headers)


async def _send_csv(request, p, unit, rows, ledger: _Ledger, note, headers) -> web.StreamResponse:
    """UTF-8 with a byte-order mark (so Excel reads the Chinese right), streamed a batch at a time."""
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/csv; charset=utf-8"})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def cell(value) -> str:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        return safe(value or "")

    async def flush() -> None:
        await response.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    await response.write(codecs.BOM_UTF8)
    writer.writerow(ledger.header())
    async for batch in _batches(request, p, unit, rows):
        writer.writerows([cell(v) for v in ledger.values(row)] for row in batch)
        await flush()
    if note:
        writer.writerow([note])
    await flush()
    await response.write_eof()
    return response


class XlsxSheet:
    """The ledger as an Excel sheet: a write-only workbook (rows go to a temporary file, not into memory), a
    bold header row that stays in view, set column widths, datetimes as dates formatted yyyy-mm-dd hh:mm."""

    def __init__(self, title: str, header: list[str], widths: list[float]):
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet(title)
        for i, width in enumerate(widths, 1):
            self.ws.column_dimensions[get_column_letter(i)].width = width
        self.ws.freeze_panes = "A2"
        self.bold = Font(bold=True)
        self.ws.append([self._cell(h, font=self.bold) for h in header])

    def _cell(self, value, *, font=None):
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            cell = WriteOnlyCell(self.ws, value=value)
            cell.number_format = _DATETIME_FORMAT
            return cell
        cell = WriteOnlyCell(self.ws, value=safe(ILLEGAL_CHARACTERS_RE.sub("", value)))
        cell.data_type = "s"  # text is text, whatever it starts with
        if font is not None:
            cell.font = font
        return cell

    def append(self, values: list) -> None:
        self.ws.append([self._cell(v) for v in values])

    def note(self, text: str) -> None:
        self.ws.append([self._cell(text, font=self.bold)])

    def save(self) -> bytes:
        out = io.BytesIO()
        self.wb.save(out)
        return out.getvalue()


def xlsx_child() -> None:
    """A child process's work (`python -c "from bot.console.reports import xlsx_child; xlsx_child()"`): JSON
    lines on stdin — the sheet's title, header and widths; then rows, datetimes as ISO text in the columns
    `dates` names; perhaps {"note": …} — and the .xlsx file on stdout."""
    lines = iter(sys.stdin.buffer)
    head = json.loads(next(lines))
    sheet, dates = XlsxSheet(head["sheet"], head["header"], head["widths"]), set(head["dates"])
    for line in lines:
        item = json.loads(line)
        if isinstance(item, dict):
            sheet.note(item["note"])
            continue
        sheet.append([datetime.fromisoformat(v) if i in dates and v else v for i, v in enumerate(item)])
    sys.stdout.buffer.write(sheet.save())
    sys.stdout.buffer.flush()


_CHILD = "from bot.console.reports import xlsx_child; xlsx_child()"


async def _build_xlsx(request, p, unit, rows, ledger: _Ledger, note) -> bytes:
    """openpyxl is pure Python (about 0.2 ms a row here): a few thousand rows are built in a thread, a bigger
    file in a child process, so that a long export holds neither the event loop nor, through the GIL, the
    webhook that shares it."""
    header, widths = ledger.header(), [width for _, width in _COLUMNS]
    title = ledger.texts("console.export.sheet")
    if rows <= XLSX_IN_PROCESS_ROWS:
        sheet = await asyncio.to_thread(XlsxSheet, title, header, widths)

        def append(batch: list[list]) -> None:
            for values in batch:
                sheet.append(values)

        async for batch in _batches(request, p, unit, rows):
            await asyncio.to_thread(append, [ledger.values(r) for r in batch])
        if note:
            sheet.note(note)
        return await asyncio.to_thread(sheet.save)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    def line(item) -> bytes:
        return (json.dumps(item, ensure_ascii=False, default=datetime.isoformat) + "\n").encode("utf-8")

    try:
        dates = [i for i, (name, _) in enumerate(_COLUMNS) if name in _DATE_COLUMNS]
        try:
            child.stdin.write(line({"sheet": title, "header": header, "widths": widths, "dates": dates}))
            async for batch in _batches(request, p, unit, rows):
                child.stdin.write(b"".join(line(ledger.values(r)) for r in batch))
                await child.stdin.drain()
            if note:
                child.stdin.write(line({"note": note}))
            child.stdin.close()
        except ConnectionError:
            pass  # the child died: what it said is on its stderr, read below
        body, errors = await asyncio.gather(child.stdout.read(), child.stderr.read())
        status = await child.wait()
    except BaseException:
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    if status != 0:
        raise RuntimeError(f"the Excel export failed (exit {status}): {errors.decode(errors='replace')[-2000:]}")
    return body
