"""The console's dashboard (统计) and the ledger (台账) export: each figure on a small known set of cases, the role
rules on the server, the CSV and Excel files (masked residents, formula cells defused, the period respected)."""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from urllib.parse import quote

import openpyxl
import pytest
from sqlalchemy import select

from bot.app import STORE
from bot.console import reports as console_reports
from bot.services import cases, reports
from bot.services.deadlines import DeadlineWorker
from storage.models import AuditEntry
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.test_complaint_dialog import STORY
from tests.test_console import grid_tree, put_in_grid
from tests.test_lifecycle import case_of, do, filed, pushed_after_delivery

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"
PLACE = "云城街道某某小区3栋"
PHONE = "13812345678"
HEADERS = [
    "案件编号",
    "收到时间",
    "群众（脱敏）",
    "问题类别",
    "地点",
    "诉求摘要",
    "承办单位",
    "状态",
    "受理期限",
    "办理期限",
    "办结时间",
    "群众评价",
    "网格",
    "走访次数",
    "走访化解",
]
INJECTION = '=HYPERLINK("http://evil.example/","点这里查看进度")'


async def file(h, openid: str, *, category="1", place=PLACE, story=STORY, phone=PHONE) -> str:
    """A complaint filed through the webhook dialog, as a resident files it."""
    r = h.resident(openid)
    for text in ("投诉", category, place, story, phone):
        await r.say(text)
    reply = await r.say("提交")
    return reply.split("案件编号：")[1].split("。")[0]


async def close(h, number: str, unit: str) -> None:
    for action, kw in (("assign", {"unit": unit}), ("start", {}), ("reply", {"text": "已处理"}), ("close", {})):
        await do(h, action, number, **kw)


async def rate(h, number: str, openid: str, score: int, comment: str | None = None) -> None:
    labels = {1: "满意", 2: "基本满意", 3: "不满意"}
    async with h.app[STORE].write() as tx:
        assert await cases.rate(
            tx, number, openid, score=score, label=labels[score], comment=comment, now=h.clock.now()
        )


async def tick_deadlines(h) -> None:
    worker = DeadlineWorker(h.app[STORE], h.clock, h.settings)
    while await worker.tick():
        pass


@pytest.fixture
async def office(db_url, clock):
    """frontdoor with a 10-day handling time, so that a case can be closed late within a month."""
    async with start_harness(db_url, clock, FRONTDOOR_LIFECYCLE_HANDLING_DAYS="10") as h:
        yield h


async def known_cases(h) -> dict[str, str]:
    """Five cases over 16 days (the clock starts on 2026-11-25, 10:00 in Shanghai; handling takes 10 days):

    A  物业与停车, day 0: accepted at once, handled by UNIT, closed on time, rated 满意 (through the dialog)
    B  物业与停车, day 0, same place as A: a possible repeat; accepted on day 16 (late: 15 days), handled by
       OTHER_UNIT, closed on time, rated 不满意
    C  邻里纠纷, day 0: never accepted — overdue by day 16
    D  房屋损坏, day 4: pending — due soon by day 16 (75 % of its 15 days gone)
    E  环境与噪音, day 0: accepted at once, handled by UNIT, overdue on day 12, closed late on day 16 (a closed
       case is overdue no more, whatever its last deadline state)
    """
    a = await file(h, "o_resident_alpha")
    b = await file(h, "o_resident_bravo")
    c = await file(h, "o_resident_charlie", category="2", place="云城街道幸福里5号")
    e = await file(h, "o_resident_echo", category="5", place="云城街道河边路")
    await do(h, "accept", a)
    await close(h, a, UNIT)
    await pushed_after_delivery(h, "o_resident_alpha")  # the closing notice asks for a rating
    resident = h.resident("o_resident_alpha")
    await resident.say("满意")
    assert "感谢您的评价" in await resident.say("跳过")
    await do(h, "accept", e)
    await do(h, "assign", e, unit=UNIT)
    await do(h, "start", e)
    h.clock.advance(days=4)
    d = await file(h, "o_resident_delta", category="4", place="云城街道老街12号")
    h.clock.advance(days=8)
    await tick_deadlines(h)
    assert (await case_of(h, e)).deadline_state == "overdue"  # its handling time ran out on day 10
    h.clock.advance(days=4)
    await do(h, "accept", b)
    await close(h, b, OTHER_UNIT)
    await rate(h, b, "o_resident_bravo", 3, "没人来看过")
    await do(h, "reply", e, text="已处理")
    await do(h, "close", e)
    await tick_deadlines(h)
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


def kpi(page: str, name: str) -> tuple[str, str]:
    """A figure card's value and its hint line, as the reader sees them."""
    found = re.search(
        rf'id="kpi-{name}".*?class="kpi-value">(.*?)</div>.*?class="kpi-hint">(.*?)</div>', page, flags=re.S
    )
    assert found, f"no figure {name} on the page"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip(), unescape(found.group(2))


def bars(page: str, section: str) -> dict[str, int]:
    """The rows of one bar chart: label → count."""
    part = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<th scope="row">(.*?)</th>.*?<td class="num">(\d+)', part, flags=re.S)
    return {unescape(label): int(n) for label, n in rows}


def trend(page: str) -> dict[str, int]:
    return {day: int(n) for day, n in re.findall(r'data-day="([\d-]+)"><td>[\d-]+</td><td>(\d+)</td>', page)}


async def download(staff: Staff, path: str) -> tuple[int, dict, bytes]:
    async with staff.http.get(staff.base + path) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))


async def audit_rows(h) -> list[AuditEntry]:
    async with h.db.read() as s:
        return list(await s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


# ---- the figures ------------------------------------------------------------------------------------------


async def test_the_dashboard_shows_each_figure_of_the_period(office):
    h = office
    await add_operator(h, "王主任", "supervisor")
    await known_cases(h)
    async with Staff(h) as staff:
        await staff.login("王主任")
        status, page = await staff.get("/dashboard")  # the last 30 days: 2026-11-12 to 2026-12-11
    assert status == 200
    assert "统计期间：2026-11-12 至 2026-12-11，共 30 天" in page
    assert kpi(page, "received")[0] == "5"
    assert kpi(page, "due_soon")[0] == "1" and kpi(page, "overdue")[0] == "1"  # D; C (not E: it is closed)
    assert kpi(page, "accept_rate") == ("66.7%", "2 / 3 件 · 期间内受理的案件中，在受理期限内受理的比例")
    assert kpi(page, "close_rate")[0] == "66.7%" and kpi(page, "close_rate")[1].startswith("2 / 3 件")
    assert kpi(page, "satisfaction")[0] == "50%" and kpi(page, "satisfaction")[1].startswith("1 / 2 件")
    assert kpi(page, "repeat_rate")[0] == "20%" and kpi(page, "repeat_rate")[1].startswith("1 / 5 件")
    assert bars(page, "by-status") == {"待受理": 2, "已办结": 3}
    assert bars(page, "by-category") == {"物业与停车": 2, "邻里纠纷": 1, "房屋损坏": 1, "环境与噪音": 1}
    assert bars(page, "by-unit") == {UNIT: 2, OTHER_UNIT: 1, "（尚未交办）": 2}
    days = trend(page)
    assert len(days) == 30 and days["2026-11-25"] == 4 and days["2026-11-29"] == 1 and sum(days.values()) == 5
    assert page.count('<rect class="day"') == 2  # a bar for each day with cases
    # Charts in SVG sized by attributes, no inline style (the CSP forbids it), no script.
    assert "style=" not in page and "<script>" not in page
    # The card of overdue cases opens the inbox on them.
    assert 'href="/console/cases?deadline=overdue"' in page


async def test_the_figures_follow_the_chosen_period(office):
    h = office
    await add_operator(h, "王主任", "supervisor")
    numbers = await known_cases(h)
    async with Staff(h) as staff:
        await staff.login("王主任")
        _, page = await staff.get("/dashboard?from=2026-11-29&to=2026-11-29")
        assert "2026-11-29 至 2026-11-29，共 1 天" in page
        assert kpi(page, "received")[0] == "1" and bars(page, "by-category") == {"房屋损坏": 1}
        assert kpi(page, "accept_rate")[0] == "暂无数据"  # nothing accepted that day
        assert kpi(page, "overdue")[0] == "1"  # now, whatever the period
        _, page = await staff.get("/dashboard?from=2026-12-11&to=2026-12-11")  # the day B and E were closed
        assert kpi(page, "received")[0] == "0" and "这段期间没有收到案件" in page
        assert kpi(page, "accept_rate")[0] == "0%" and kpi(page, "close_rate")[0] == "50%"
        assert kpi(page, "satisfaction")[0] == "0%"  # B's 不满意
    assert numbers["D"] not in page  # the dashboard lists no cases


async def test_days_are_the_offices_local_days(harness):
    h = harness
    await add_operator(h, "王主任", "supervisor")
    h.clock.set(datetime(2026, 11, 25, 15, 30, tzinfo=UTC))  # 23:30 in Shanghai
    await file(h, "o_late_evening", category="3", place="某村")
    h.clock.set(datetime(2026, 11, 25, 16, 30, tzinfo=UTC))  # 00:30 on the 26th in Shanghai
    await file(h, "o_after_midnight", category="5", place="某路")
    async with h.app[STORE].read() as tx:
        tz = h.settings.tz
        figures = await reports.figures(tx, reports.period(date(2026, 11, 25), date(2026, 11, 26), tz))
    assert [n for _, n in figures.trend] == [1, 1]
    async with Staff(h) as staff:
        await staff.login("王主任")
        _, page = await staff.get("/dashboard?from=2026-11-25&to=2026-11-25")
    assert kpi(page, "received")[0] == "1" and bars(page, "by-category") == {"土地与征收": 1}


async def test_a_period_it_cannot_read_is_said_so(harness):
    h = harness
    await add_operator(h, "王主任", "supervisor")
    async with Staff(h) as staff:
        await staff.login("王主任")
        status, page = await staff.get("/dashboard?from=2026-13-01")
        assert status == 400 and "日期须写成 年-月-日" in page
        status, page = await staff.get("/dashboard?from=2026-11-20&to=2026-11-01")
        assert status == 400 and "开始日期不能晚于结束日期" in page
        status, page = await staff.get("/dashboard?from=2020-01-01&to=2026-11-01")
        assert status == 400 and "最长 366 天" in page
        status, page = await staff.get("/dashboard?from=<script>alert(1)</script>")
        assert status == 400 and "<script>alert" not in page
        status, page = await staff.get("/export.csv?to=yesterday")
        assert status == 400 and "日期须写成" in page


# ---- who sees what ----------------------------------------------------------------------------------------


async def test_a_unit_handler_sees_and_exports_their_units_cases_only(office):
    h = office
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    numbers = await known_cases(h)
    async with Staff(h) as staff:
        await staff.login("街道小刘")
        status, page = await staff.get("/dashboard")
        assert status == 200 and f"统计（{UNIT}）" in page
        assert kpi(page, "received")[0] == "2" and bars(page, "by-unit") == {UNIT: 2}
        assert kpi(page, "accept_rate")[1].startswith("2 / 2 件") and kpi(page, "close_rate")[0] == "50%"
        assert kpi(page, "satisfaction")[0] == "100%" and kpi(page, "repeat_rate")[0] == "0%"
        assert kpi(page, "overdue")[0] == "0" and kpi(page, "due_soon")[0] == "0"  # C and D are no one's yet
        status, _, body = await download(staff, "/export.csv")
        assert status == 200
        rows = csv_rows(body)
        assert [r[0] for r in rows[1:]] == [numbers["A"], numbers["E"]]
        status, _, body = await download(staff, "/export.xlsx")
        sheet = openpyxl.load_workbook(io.BytesIO(body)).active
        assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == [numbers["A"], numbers["E"]]
    assert any(a.action == "export" and a.detail and f"unit={UNIT}" in a.detail for a in await audit_rows(h))


async def test_a_co_handling_unit_counts_the_case_too(harness):
    h = harness
    await add_operator(h, "公安小陈", "unit", unit="白云区公安分局")
    number = await file(h, "o_resident_co")
    await file(h, "o_resident_other", category="2", place="别处")
    await do(h, "accept", number)
    await do(h, "assign", number, unit=UNIT, co_units=["白云区公安分局"])
    async with Staff(h) as staff:
        await staff.login("公安小陈")
        _, page = await staff.get("/dashboard")
        assert kpi(page, "received")[0] == "1" and bars(page, "by-unit") == {UNIT: 1}
        _, _, body = await download(staff, "/export.csv")
        assert [r[0] for r in csv_rows(body)[1:]] == [number]


async def test_a_grid_worker_is_refused_the_dashboard_and_the_export(harness):
    h = harness
    await add_operator(h, "网格员小周", "gridworker")
    await filed(h, "o_resident_grid")
    async with Staff(h) as staff:
        await staff.login("网格员小周")
        _, inbox_page = await staff.get("/cases")
        assert "/console/dashboard" not in inbox_page  # no link in the navigation …
        for path in ("/dashboard", "/export.csv", "/export.xlsx"):
            status, headers, body = await download(staff, path)  # … and the server refuses all the same
            assert status == 403 and "没有权限" in body.decode()
            assert "attachment" not in headers.get("Content-Disposition", "")
    refused = [a.action for a in await audit_rows(h) if a.outcome == "refused" and a.action != "inbox"]
    assert refused == ["dashboard", "export", "export"]


async def test_a_viewer_sees_the_dashboard_and_exports_with_phones_masked(harness):
    h = harness
    await add_operator(h, "观察员", "viewer")
    await add_operator(h, "张科员", "dispatcher")
    number = await file(h, "o_resident_viewer")
    async with Staff(h) as viewer:
        await viewer.login("观察员")
        status, page = await viewer.get("/dashboard")
        assert status == 200 and kpi(page, "received")[0] == "1"
        _, _, body = await download(viewer, "/export.csv")
    row = csv_rows(body)[1]
    assert row[0] == number and row[2] == "o_re… 138****5678"
    assert PHONE.encode() not in body and b"o_resident_viewer" not in body
    async with Staff(h) as dispatcher:
        await dispatcher.login("张科员")
        _, _, body = await download(dispatcher, "/export.csv")
    assert csv_rows(body)[1][2] == f"o_re… {PHONE}"  # a dispatcher may see the phone, never the openid
    assert b"o_resident_viewer" not in body


# ---- the ledger files -------------------------------------------------------------------------------------


async def test_the_csv_ledger(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    early = await file(h, "o_resident_early", category="2", place="早些时候的地点")
    h.clock.advance(days=2)  # 2026-11-27
    number = await file(h, "o_resident_evil", category="5", place="@某广场", story=INJECTION)
    await do(h, "accept", number)
    await close(h, number, OTHER_UNIT)
    await rate(h, number, "o_resident_evil", 3, "-1+1 还是没人管")
    h.clock.advance(days=3)  # 2026-11-30
    late = await file(h, "o_resident_late", category="3", place="后来的地点")
    async with Staff(h) as staff:
        await staff.login("张科员")
        _, inbox_page = await staff.get("/cases")
        assert 'href="/console/export.csv"' in inbox_page and 'href="/console/export.xlsx"' in inbox_page
        _, dashboard = await staff.get("/dashboard?from=2026-11-27&to=2026-11-27")
        assert 'href="/console/export.csv?from=2026-11-27&amp;to=2026-11-27"' in dashboard
        status, headers, body = await download(staff, "/export.csv?from=2026-11-27&to=2026-11-27")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"].endswith("filename*=UTF-8''" + quote("台账_2026-11-27_2026-11-27.csv"))
    assert headers["Cache-Control"] == "no-store" and "X-Content-Type-Options" in headers
    rows = csv_rows(body)
    assert rows[0] == HEADERS
    assert [r[0] for r in rows[1:]] == [number]  # neither the case before the period nor the one after
    assert early.encode() not in body and late.encode() not in body
    row = dict(zip(HEADERS, rows[1], strict=True))
    assert row["收到时间"] == "2026-11-27 10:00"  # Shanghai time
    assert row["群众（脱敏）"] == f"o_re… {PHONE}"
    assert row["问题类别"] == "环境与噪音" and row["承办单位"] == OTHER_UNIT and row["状态"] == "已办结"
    assert row["诉求摘要"] == "'" + INJECTION  # a formula no spreadsheet will run
    assert row["地点"] == "'@某广场"
    assert row["群众评价"] == "不满意：-1+1 还是没人管"  # the cell starts with a word: nothing to defuse
    assert row["受理期限"] == "2026-12-12 10:00" and row["办结时间"] == "2026-11-27 10:00"
    assert row["办理期限"] == "2027-01-26 10:00"
    exports = [a for a in await audit_rows(h) if a.action == "export"]
    assert [(a.operator, a.outcome, a.detail) for a in exports] == [
        ("张科员", "ok", "csv 2026-11-27~2026-11-27 rows=1")
    ]


@pytest.fixture(params=["thread", "child"])
def xlsx_builder(request, monkeypatch):
    """A small file is built in a thread of the server, a big one in a child process: both ways, here."""
    if request.param == "child":
        monkeypatch.setattr(console_reports, "XLSX_IN_PROCESS_ROWS", 0)
    return request.param


async def test_the_excel_ledger(harness, xlsx_builder):
    h = harness
    await add_operator(h, "王主任", "supervisor")
    first = await file(h, "o_resident_xlsx_one")
    h.clock.advance(hours=1)
    async with h.app[STORE].write() as tx:  # a control character no spreadsheet may hold, straight in
        new = cases.NewComplaint(
            "o_resident_xlsx_two", "邻里纠纷", "另一处", None, None, INJECTION + "\x07", [], [], None
        )
        second = await cases.submit_complaint(
            tx, new, now=h.clock.now(), tz=h.settings.tz, prefix="XF", acceptance_days=15
        )
    async with Staff(h) as staff:
        await staff.login("王主任")
        status, headers, body = await download(staff, "/export.xlsx?from=2026-11-25&to=2026-11-25")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert quote("台账_2026-11-25_2026-11-25.xlsx") in headers["Content-Disposition"]
    assert headers["Content-Disposition"].startswith("attachment;")
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    assert sheet.title == "台账"
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == HEADERS and all(c.font.b for c in sheet[1])
    assert [r[0] for r in rows[1:]] == [first, second]
    received = sheet.cell(row=2, column=2)
    assert received.value == datetime(2026, 11, 25, 10, 0) and received.number_format == "yyyy-mm-dd hh:mm"
    assert sheet.cell(row=2, column=3).value == f"o_re… {PHONE}"
    assert sheet.cell(row=2, column=8).value == "待受理" and sheet.cell(row=2, column=11).value is None
    story = sheet.cell(row=3, column=6)
    assert story.data_type == "s" and story.value == "'" + INJECTION  # text, not a formula; the bell is dropped
    assert sheet.column_dimensions["F"].width >= 40 and sheet.column_dimensions["A"].width >= 15


@pytest.mark.parametrize("kind", ["csv", "xlsx", "xlsx-child"])
async def test_an_export_over_the_cap_says_so(harness, monkeypatch, kind):
    h = harness
    if kind == "xlsx-child":
        monkeypatch.setattr(console_reports, "XLSX_IN_PROCESS_ROWS", 0)
        kind = "xlsx"
    monkeypatch.setattr(reports, "EXPORT_MAX_ROWS", 2)
    monkeypatch.setattr(reports, "EXPORT_BATCH", 1)  # a batch per row: the keyset walks on without repeats
    await add_operator(h, "张科员", "dispatcher")
    numbers = []
    for i in range(3):
        numbers.append(await file(h, f"o_resident_cap_{i}", category=str(i + 1), place=f"某路{i}号"))
        h.clock.advance(minutes=1)
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, headers, body = await download(staff, f"/export.{kind}")
    assert status == 200
    assert quote(f"台账_2026-10-27_2026-11-25_仅前2件.{kind}") in headers["Content-Disposition"]
    if kind == "csv":
        rows = csv_rows(body)
    else:
        rows = [list(r) for r in openpyxl.load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True)]
    assert [r[0] for r in rows[1:3]] == numbers[:2]
    assert len(rows) == 4 and "共收到 3 件，本文件只含前 2 件" in rows[3][0]
    assert [a.detail for a in await audit_rows(h) if a.action == "export"] == [
        f"{kind} 2026-10-27~2026-11-25 rows=2 of 3"
    ]


# ---- what residents and staff typed is shown as text -------------------------------------------------------


async def test_nothing_typed_is_rendered_as_markup(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    evil_category = '<img src=x onerror="alert(1)">类别'
    evil_unit = "<script>alert('unit')</script>办"
    async with h.app[STORE].write() as tx:
        new = cases.NewComplaint(
            "o_resident_markup", evil_category, "<b>某地</b>", None, None, "<i>诉求</i>", [], [], None
        )
        number = await cases.submit_complaint(
            tx, new, now=h.clock.now(), tz=h.settings.tz, prefix="XF", acceptance_days=15
        )
    await do(h, "accept", number)
    await do(h, "assign", number, unit=evil_unit)
    async with Staff(h) as staff:
        await staff.login("张科员")
        _, page = await staff.get("/dashboard")
        _, _, body = await download(staff, "/export.csv")
    assert "<img src=x" not in page and "<script>alert(" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;类别" in page
    assert "&lt;script&gt;alert(&#39;unit&#39;)&lt;/script&gt;办" in page
    assert bars(page, "by-category") == {evil_category: 1} and bars(page, "by-unit") == {evil_unit: 1}
    row = csv_rows(body)[1]
    assert row[3] == evil_category and row[4] == "<b>某地</b>"  # a CSV holds text as it is


async def test_the_period_of_the_service_is_local_midnight_to_midnight(harness):
    tz = harness.settings.tz
    p = reports.period(date(2026, 11, 1), date(2026, 11, 30), tz)
    assert p.start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC) and p.end == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert len(p.days) == 30 and p.bounds[1] - p.bounds[0] == timedelta(days=1)
    with pytest.raises(ValueError):
        reports.period(date(2026, 11, 2), date(2026, 11, 1), tz)


# ---- by grid ----------------------------------------------------------------------------------------------


def grid_rows(page: str) -> dict[str, tuple]:
    """The by-grid table: code → (path, received, open, overdue, satisfaction)."""
    part = page.split('id="by-grid"', 1)[1].split("</section>", 1)[0]
    found = {}
    for code, row in re.findall(r'<tr data-grid="([^"]+)">(.*?)</tr>', part, flags=re.S):
        label = unescape(re.search(r'<th scope="row">(.*?)</th>', row).group(1))
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r'<td class="num[^"]*">(.*?)</td>', row)]
        found[code] = (label, int(cells[0]), int(cells[1]), int(cells[2]), cells[3])
    return found


async def test_the_dashboard_counts_by_grid(harness):
    h = harness
    await add_operator(h, "王主任", "supervisor")
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    tree = await grid_tree(h)
    pending = await file(h, "o_grid_pending")
    rated_well = await file(h, "o_grid_well", category="2")
    late = await file(h, "o_grid_late", category="3")
    rated_badly = await file(h, "o_grid_badly", category="5")
    elsewhere = await file(h, "o_grid_none", category="4")
    for number, code in ((pending, "G1"), (rated_well, "G1"), (late, "G2"), (rated_badly, "G3")):
        await put_in_grid(h, number, tree[code])
    for number, openid, score in ((rated_well, "o_grid_well", 1), (rated_badly, "o_grid_badly", 3)):
        await do(h, "accept", number)
        await close(h, number, UNIT if score == 1 else OTHER_UNIT)
        await rate(h, number, openid, score)
    await do(h, "accept", late)
    await do(h, "assign", late, unit=UNIT)
    async with h.app[STORE].write() as tx:
        await tx.run("UPDATE cases SET deadline_state = 'overdue' WHERE number = :n", n=late)
    await do(h, "accept", elsewhere)
    async with Staff(h) as staff:
        await staff.login("王主任")
        _, page = await staff.get("/dashboard")
    g1, g2, g3 = (tree[c].path for c in ("G1", "G2", "G3"))
    assert grid_rows(page) == {
        "G1": (g1, 2, 1, 0, "100%"),  # the pending case open; the closed one rated 满意
        "G2": (g2, 1, 1, 1, "暂无数据"),
        "G3": (g3, 1, 0, 0, "0%"),
    }
    assert list(grid_rows(page)) == ["G1", "G2", "G3"]  # most cases first
    assert bars(page, "by-grid") == {g1: 2, g2: 1, g3: 1}
    assert "另有 1 件期间内收到的案件不属于任何网格" in page
    assert 'href="/console/cases?grid=G1"' in page  # a grid's open cases, in the inbox
    assert "style=" not in page
    async with Staff(h) as staff:
        await staff.login("街道小刘")  # their unit's: the closed G1 case and the overdue G2 one
        _, page = await staff.get("/dashboard")
    assert grid_rows(page) == {"G1": (g1, 1, 0, 0, "100%"), "G2": (g2, 1, 1, 1, "暂无数据")}
    assert "不属于任何网格" not in page
    async with h.app[STORE].read() as tx:
        figures = await reports.figures(tx, reports.last_days(h.clock.now(), h.settings.tz), unit=UNIT)
    assert figures.without_grid == 0 and figures.satisfied == reports.Rate(1, 1)


async def test_a_dashboard_without_grids_has_no_grid_table(harness):
    h = harness
    await add_operator(h, "王主任", "supervisor")
    await file(h, "o_no_grids")
    async with Staff(h) as staff:
        await staff.login("王主任")
        _, page = await staff.get("/dashboard")
    assert kpi(page, "received")[0] == "1" and 'id="by-grid"' not in page


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
async def test_the_ledger_names_each_cases_grid(harness, kind):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    tree = await grid_tree(h)
    in_grid = await file(h, "o_ledger_grid")
    h.clock.advance(minutes=1)
    without = await file(h, "o_ledger_none", category="2")
    await put_in_grid(h, in_grid, tree["G3"])
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, _, body = await download(staff, f"/export.{kind}")
    assert status == 200
    if kind == "csv":
        rows = csv_rows(body)
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(body)).active
        rows = [["" if v is None else v for v in r] for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADERS
    grid = HEADERS.index("网格")
    assert [(r[0], r[grid]) for r in rows[1:]] == [(in_grid, "云岩区/中华路街道/幸福社区/第一网格"), (without, "")]
