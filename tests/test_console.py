"""The operator console over HTTP: signing in, the guard (sessions, CSRF, roles), the inbox and case actions.
Each role boundary is checked on the server: by URL and by form, not only by what the pages show."""

import asyncio
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import STORE
from bot.cli import main
from bot.services import areas, cases
from storage.models import AuditEntry, Case, OutboxMessage
from tests.conftest import start_harness
from tests.console_client import PASSWORD, Staff, add_operator, csrf_of
from tests.test_lifecycle import case_of, do, filed

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"


async def audit_rows(h) -> list[AuditEntry]:
    async with h.db.read() as s:
        return list(await s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def status_of(h, number: str) -> str:
    return (await case_of(h, number)).status


# ---- signing in ---------------------------------------------------------------------------------------------


async def test_a_stranger_is_sent_to_sign_in_and_comes_back_where_they_were(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h)
    async with Staff(h) as staff:
        async with staff.http.get(f"{staff.base}/cases/{number}", allow_redirects=False) as resp:
            assert resp.status == 302 and "/console/login?next=" in resp.headers["Location"]
        await staff.get(f"/login?next=/console/cases/{number}")
        async with staff.http.post(
            staff.base + "/login",
            data={"csrf": staff.csrf, "name": "张科员", "password": PASSWORD, "next": f"/console/cases/{number}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"] == f"/console/cases/{number}"
            cookie = resp.cookies["fd_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]


async def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_account(harness, monkeypatch):
    h = harness
    await add_operator(h, "李科员", "dispatcher")
    async with Staff(h) as staff:
        status, page = await staff.login("李科员", "不对的密码不对的密码")
        assert status == 401 and "用户名或密码不正确" in page
        status, page = await staff.login("没有这个人", PASSWORD)
        assert status == 401 and "用户名或密码不正确" in page  # an unknown name reads the same
        for _ in range(4):
            status, page = await staff.login("李科员", "不对的密码不对的密码")
        assert status == 403 and "账号已锁定" in page
        status, page = await staff.login("李科员", PASSWORD)  # the right password does not help now
        assert status == 403 and "账号已锁定" in page
        h.clock.advance(minutes=16)
        status, page = await staff.login("李科员", PASSWORD)
        assert status == 200 and "案件" in page
    outcomes = [(a.operator, a.action, a.outcome) for a in await audit_rows(h)]
    assert outcomes.count(("李科员", "login", "failed")) == 5
    assert ("李科员", "login", "refused") in outcomes and outcomes[-1] == ("李科员", "login", "ok")


async def test_the_cli_adds_operators_and_a_new_password_lifts_a_lockout(harness, monkeypatch, capsys):
    h = harness
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    monkeypatch.setattr("sys.stdin", _Lines("短"))
    assert await asyncio.to_thread(main, ["operator", "add", "王主任", "--role", "supervisor", "--password-stdin"]) == 1
    assert "至少需要 10 个字符" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Lines(PASSWORD))
    assert await asyncio.to_thread(main, ["operator", "add", "王主任", "--role", "supervisor", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", _Lines(PASSWORD))
    assert await asyncio.to_thread(main, ["operator", "add", "赵办", "--role", "unit", "--password-stdin"]) == 1
    assert "--unit" in capsys.readouterr().err
    async with Staff(h) as staff:
        for _ in range(5):
            await staff.login("王主任", "不对的密码不对的密码")
        assert (await staff.login("王主任", PASSWORD))[0] == 403
        monkeypatch.setattr("sys.stdin", _Lines("另一个足够长的新密码"))
        assert await asyncio.to_thread(main, ["operator", "passwd", "王主任", "--password-stdin"]) == 0
        assert (await staff.login("王主任", "另一个足够长的新密码"))[0] == 200
    async with h.db.read() as s:
        stored = await s.scalar(select(func.count()).select_from(AuditEntry))
    assert stored >= 6


class _Lines:
    def __init__(self, *lines: str):
        self.lines = [line + "\n" for line in lines]

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""


async def test_signing_out_ends_the_session(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, _ = await staff.post("/logout")
        assert status == 200  # the sign-in page after the redirect
        async with staff.http.get(f"{staff.base}/cases", allow_redirects=False) as resp:
            assert resp.status == 302


async def test_pages_carry_the_security_headers_and_cookies_are_secure_behind_https(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        async with staff.http.get(f"{staff.base}/cases") as resp:
            headers = resp.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
        async with staff.http.get(f"{staff.base}/login", headers={"X-Forwarded-Proto": "https"}) as resp:
            page = await resp.text()
            login_cookie = resp.cookies["fd_login_csrf"]
            assert login_cookie["secure"]
        # The browser sends a Secure cookie over HTTPS only; the proxy in front speaks plain HTTP to us.
        https = {"X-Forwarded-Proto": "https", "Cookie": f"fd_login_csrf={login_cookie.value}"}
        data = {"csrf": csrf_of(page), "name": "张科员", "password": PASSWORD, "next": ""}
        async with staff.http.post(f"{staff.base}/login", data=data, headers=https, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.cookies["fd_session"]["secure"]


# ---- CSRF ---------------------------------------------------------------------------------------------------


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h)
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.get(f"/cases/{number}")
        status, page = await staff.post(f"/cases/{number}/accept", csrf=False)
        assert status == 403 and "表单已过期或来源不明" in page
        status, page = await staff.post(f"/cases/{number}/accept", {"csrf": "forged"}, csrf=False)
        assert status == 403
    assert await status_of(h, number) == "pending"
    assert [a.action for a in await audit_rows(h) if a.outcome == "refused"] == ["csrf_refused", "csrf_refused"]


async def test_the_sign_in_form_without_its_token_is_refused(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        async with staff.http.post(f"{staff.base}/login", data={"name": "张科员", "password": PASSWORD}) as resp:
            assert resp.status == 403
            assert "fd_session" not in resp.cookies


# ---- roles --------------------------------------------------------------------------------------------------


async def _assigned(h, openid: str, unit: str) -> str:
    number = await filed(h, openid)
    await do(h, "accept", number)
    await do(h, "assign", number, unit=unit)
    return number


async def test_a_unit_handler_sees_and_acts_on_their_units_cases_only(harness):
    h = harness
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    mine = await _assigned(h, "o_mine", UNIT)
    theirs = await _assigned(h, "o_theirs", OTHER_UNIT)
    async with Staff(h) as staff:
        await staff.login("街道小刘")
        status, page = await staff.get("/cases?view=all")
        assert mine in page and theirs not in page
        status, page = await staff.get(f"/cases/{theirs}")  # by URL
        assert status == 403 and "没有权限" in page
        await staff.get(f"/cases/{mine}")
        status, _ = await staff.post(f"/cases/{theirs}/start")  # by form, with a valid token
        assert status == 403
        assert await status_of(h, theirs) == "assigned"
        status, page = await staff.act(mine, "start")
        assert status == 200 and "已完成：开始办理" in page
        status, _ = await staff.act(mine, "accept")  # a dispatcher's move
        assert status == 403
    assert await status_of(h, mine) == "in_progress"
    refused = [(a.action, a.target) for a in await audit_rows(h) if a.outcome == "refused"]
    assert refused == [("view_case", theirs), ("view_case", theirs), ("accept", mine)]


async def test_a_co_handling_unit_sees_the_case_too(harness):
    h = harness
    await add_operator(h, "公安小陈", "unit", unit="白云区公安分局")
    number = await filed(h, "o_co")
    await do(h, "accept", number)
    await do(h, "assign", number, unit=UNIT, co_units=["白云区公安分局"])
    async with Staff(h) as staff:
        await staff.login("公安小陈")
        assert (await staff.get(f"/cases/{number}"))[0] == 200
        assert number in (await staff.get("/cases"))[1]


async def test_a_viewer_reads_with_the_phone_masked_and_cannot_act(harness):
    h = harness
    await add_operator(h, "观察员", "viewer")
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h)  # phone 13812345678
    async with Staff(h) as viewer:
        await viewer.login("观察员")
        status, page = await viewer.get(f"/cases/{number}")
        assert status == 200 and "138****5678" in page and "13812345678" not in page
        assert f"/cases/{number}/accept" not in page  # no buttons …
        status, _ = await viewer.post(f"/cases/{number}/accept")
        assert status == 403  # … and the server refuses all the same
    async with Staff(h) as dispatcher:
        await dispatcher.login("张科员")
        assert "13812345678" in (await dispatcher.get(f"/cases/{number}"))[1]
    assert await status_of(h, number) == "pending"


async def test_a_grid_worker_has_no_cases_to_see(harness):
    h = harness
    await add_operator(h, "网格员小周", "gridworker")
    number = await filed(h)
    async with Staff(h) as staff:
        await staff.login("网格员小周")
        assert (await staff.get("/cases"))[0] == 403
        assert (await staff.get(f"/cases/{number}"))[0] == 403


# ---- actions ------------------------------------------------------------------------------------------------


async def test_the_closed_loop_from_the_console_reaches_the_resident(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    openid = "o_console_loop"
    number = await filed(h, openid)
    async with Staff(h) as dispatcher:
        await dispatcher.login("张科员")
        status, page = await dispatcher.act(number, "accept")
        assert status == 200 and "已完成：受理" in page
        status, page = await dispatcher.act(number, "assign", unit=UNIT, co_units="白云区公安分局、 ")
        assert status == 200 and UNIT in page
    async with Staff(h) as handler:
        await handler.login("街道小刘")
        await handler.act(number, "start")
        status, page = await handler.get(f"/cases/{number}")
        assert "客服消息窗口开着" in page  # the resident wrote minutes ago
        status, page = await handler.act(number, "reply", text="已约谈物业，停车费调整为每月100元。")
        assert status == 200 and "已答复" in page
    case = await case_of(h, number)
    assert (case.status, case.lead_unit, case.co_units) == ("replied", UNIT, ["白云区公安分局"])
    assert [(e.action, e.actor) for e in case.events[-4:]] == [
        ("accepted", "张科员"),
        ("assigned", "张科员"),
        ("started", "街道小刘"),
        ("replied", "街道小刘"),
    ]
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    assert any("停车费调整为每月100元" in (text or "") for text in await h.pushed(openid))
    done = [(a.operator, a.action, a.target) for a in await audit_rows(h) if a.outcome == "ok" and a.target]
    assert done == [
        ("张科员", "accept", number),
        ("张科员", "assign", number),
        ("街道小刘", "start", number),
        ("街道小刘", "reply", number),
    ]


@pytest.mark.parametrize(
    ("action", "fields", "message"),
    [
        ("refuse", {}, "请填写理由"),
        ("assign", {"co_units": "公安"}, "请填写承办单位"),
        ("merge", {}, "请填写并入案件编号"),
        ("note", {}, "请填写内部备注"),
        ("summon", {"units": "派出所"}, "请填写紧急程度"),
    ],
)
async def test_an_action_without_what_it_needs_says_so_and_changes_nothing(harness, action, fields, message):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h)
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.act(number, action, **fields)
        assert status == 400 and message in page
    case = await case_of(h, number)
    assert case.status == "pending" and [e.action for e in case.events] == ["submitted"]


async def test_moves_the_rules_forbid_are_refused_with_the_reason(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h)
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.act(number, "close")
        assert status == 409 and "待受理" in page and "办结" in page
        status, page = await staff.act(number, "summon", units="派出所", urgency="红")
        assert status == 409 and "不能吹哨召集" in page
        await staff.act(number, "accept")
        status, page = await staff.act(number, "extend", reason="需要现场勘查", days="99")
        assert status == 400 and "1 到 30" in page
        status, page = await staff.act(number, "extend", reason="需要现场勘查", days="10")
        assert status == 200 and "已完成：延期" in page
    assert await status_of(h, number) == "accepted"


async def test_an_internal_note_is_on_the_ledger_and_not_told_to_the_resident(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_note")
    async with h.db.read() as s:
        before = await s.scalar(select(func.count()).select_from(OutboxMessage))
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.act(number, "note", note="已电话联系物业经理，明天上门。")
        assert status == 200 and "已电话联系物业经理" in page
    case = await case_of(h, number)
    assert (case.events[-1].action, case.events[-1].actor) == ("noted", "张科员")
    async with h.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == before


async def test_what_residents_wrote_is_shown_escaped(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    r = h.resident("o_script")
    await r.say("投诉")
    await r.say("1")
    await r.say('<img src=x onerror="alert(1)">小区')
    await r.say("<script>alert('x')</script>物业乱收费")
    await r.say("跳过")
    reply = await r.say("提交")
    number = reply.split("案件编号：")[1].split("。")[0]
    async with Staff(h) as staff:
        await staff.login("张科员")
        _, inbox_page = await staff.get("/cases")
        _, page = await staff.get(f"/cases/{number}")
    for html in (inbox_page, page):
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;物业乱收费" in page


# ---- the inbox ------------------------------------------------------------------------------------------------


async def _many(h, count: int) -> list[str]:
    """Cases straight through the service (the webhook is not what is tested here), received a minute apart."""
    numbers = []
    for i in range(count):
        async with h.app[STORE].write() as tx:
            new = cases.NewComplaint(f"o_many_{i}", "其他", f"某路{i}号", None, None, f"第{i}件诉求", [], [], None)
            numbers.append(
                await cases.submit_complaint(
                    tx, new, now=h.clock.now(), tz=h.settings.tz, prefix="XF", acceptance_days=15
                )
            )
        h.clock.advance(minutes=1)
    return numbers


async def test_the_inbox_pages_by_deadline_without_repeats_or_gaps(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_CONSOLE_PAGE_SIZE="10") as h:
        await add_operator(h, "张科员", "dispatcher")
        numbers = await _many(h, 23)
        seen: list[str] = []
        async with Staff(h) as staff:
            await staff.login("张科员")
            path = "/cases"
            for _ in range(5):
                _, page = await staff.get(path)
                seen += [n for n in numbers if f'data-number="{n}"' in page and n not in seen]
                if 'rel="next"' not in page:
                    break
                path = "/cases?" + page.split('rel="next" href="?')[1].split('"')[0].replace("&amp;", "&")
        assert seen == numbers  # the earliest deadline first: filed first, due first
        # Filters: by text and by number.
        async with Staff(h) as staff:
            await staff.login("张科员")
            _, page = await staff.get("/cases?q=第7件")
            assert 'data-number="' + numbers[7] + '"' in page and numbers[8] not in page
            _, page = await staff.get(f"/cases?view=all&q={numbers[3]}")
            assert page.count('data-number="') == 1


async def test_the_inbox_filters_by_status_and_deadline_state(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    first, second = await filed(h, "o_f1"), await filed(h, "o_f2")
    await do(h, "accept", second)
    async with h.db.write() as s:
        case = await s.scalar(select(Case).where(Case.number == first))
        case.deadline_state = "overdue"
        case.accept_due_at = h.clock.now() - timedelta(days=1)
    async with Staff(h) as staff:
        await staff.login("张科员")
        _, page = await staff.get("/cases?view=pending")
        assert first in page and second not in page
        _, page = await staff.get("/cases?deadline=overdue")
        assert first in page and second not in page and "超期" in page
        _, page = await staff.get("/cases?view=nonsense&deadline=whatever")  # unknown values are ignored
        assert first in page and second in page


async def test_a_unit_handlers_inbox_merges_led_and_co_handled_cases_page_by_page(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_CONSOLE_PAGE_SIZE="10") as h:
        await add_operator(h, "街道小刘", "unit", unit=UNIT)
        numbers = await _many(h, 21)
        expected = []
        for i, number in enumerate(numbers):
            await do(h, "accept", number)
            if i % 3 == 0:
                await do(h, "assign", number, unit=OTHER_UNIT, co_units=[UNIT])  # co-handled
                expected.append(number)
            elif i % 3 == 1:
                await do(h, "assign", number, unit=UNIT)  # led
                expected.append(number)
            else:
                await do(h, "assign", number, unit=OTHER_UNIT)  # not theirs
        seen: list[str] = []
        async with Staff(h) as staff:
            await staff.login("街道小刘")
            path = "/cases"
            for _ in range(5):
                _, page = await staff.get(path)
                seen += [n for n in numbers if f'data-number="{n}"' in page]
                if 'rel="next"' not in page:
                    break
                path = "/cases?" + page.split('rel="next" href="?')[1].split('"')[0].replace("&amp;", "&")
        assert seen == expected  # by deadline: accepted one after another, due one after another


async def test_the_inbox_text_search_finds_short_and_long_words_in_story_and_place(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    numbers = await _many(h, 3)  # 某路0号 … "第0件诉求" …
    r = h.resident("o_search")
    await r.say("投诉")
    await r.say("5")
    await r.say("观山湖区百花湖镇某村")
    await r.say("施工噪音扰民，夜里十二点还在打桩")
    await r.say("跳过")
    found = (await r.say("提交")).split("案件编号：")[1].split("。")[0]
    async with Staff(h) as staff:
        await staff.login("张科员")
        for word in ("噪音", "夜里十二点还在打桩", "百花湖镇", "打桩"):
            _, page = await staff.get(f"/cases?view=all&q={word}")
            assert f'data-number="{found}"' in page, word
            assert not any(f'data-number="{n}"' in page for n in numbers), word
        _, page = await staff.get('/cases?view=all&q=不存在的"内容')
        assert "没有符合条件的案件" in page


async def _at(h, status: str) -> str:
    """A case moved by the rules to `status`: assigned, in_progress or replied."""
    number = await filed(h, f"o_at_{status}")
    steps = [("accept", {}), ("assign", {"unit": UNIT}), ("start", {}), ("reply", {"text": "已处理"})]
    for action, kw in steps[: {"assigned": 2, "in_progress": 3, "replied": 4}[status]]:
        await do(h, action, number, **kw)
    return number


@pytest.mark.parametrize(
    ("status", "action", "fields", "code", "message"),
    [
        ("assigned", "return", {}, 400, "请填写理由"),
        ("in_progress", "reply", {}, 400, "请填写答复内容"),
        ("replied", "reopen", {}, 400, "请填写理由"),
        ("in_progress", "extend", {"days": "10"}, 400, "请填写理由"),
        ("assigned", "tier", {"tier": "大事"}, 409, "没有“大事”这一级"),
        ("assigned", "checkin", {"unit": "派出所"}, 409, "没有召集"),
    ],
)
async def test_each_later_action_without_what_it_needs_is_refused_and_changes_nothing(
    harness, status, action, fields, code, message
):
    h = harness
    await add_operator(h, "管理员", "admin")
    number = await _at(h, status)
    before = await case_of(h, number)
    async with Staff(h) as staff:
        await staff.login("管理员")
        got, page = await staff.act(number, action, **fields)
        assert got == code and message in page
    after = await case_of(h, number)
    assert (after.status, after.tier, len(after.events)) == (before.status, before.tier, len(before.events))


async def test_guesses_sent_all_at_once_cannot_outrun_the_lockout(harness):
    h = harness
    await add_operator(h, "李科员", "dispatcher")
    async with Staff(h) as staff:
        _, page = await staff.get("/login")
        data = {"csrf": csrf_of(page), "name": "李科员", "password": "不对的密码不对的密码", "next": ""}

        async def guess() -> int:
            async with staff.http.post(staff.base + "/login", data=data) as resp:
                return resp.status

        statuses = await asyncio.gather(*(guess() for _ in range(20)))
    checked = [a for a in await audit_rows(h) if a.action == "login" and a.outcome == "failed"]
    assert len(checked) == 5  # only max_failed_logins passwords were ever checked
    assert statuses.count(401) <= 5 and statuses.count(403) >= 15  # the rest were refused unchecked


async def test_bad_input_is_a_clear_answer_never_a_500(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    number = await filed(h, "o_bad_input")
    async with Staff(h) as staff:
        await staff.login("管理员")
        for path in (
            "/cases?q=ab%00cd",
            "/cases?view=all&after=0001-01-01T00:00:00%2B05:00_1",
            "/cases?after=2026-01-01T00:00:00_99999999999999999999",
            "/dashboard?from=0001-01-01&to=0001-01-02",
            "/export.csv?from=1970-01-01&to=9000-12-31",
        ):
            status, _ = await staff.get(path)
            assert status in (200, 400), path
        await staff.get("/canned")
        assert (await staff.post("/canned/99999999999999999999999/delete"))[0] == 404
        assert (await staff.post("/canned", {"id": "99999999999999999999999", "title": "标题", "body": "内容"}))[
            0
        ] == 200
        status, _ = await staff.act(number, "accept")
        assert status == 200
        status, _ = await staff.act(number, "assign", unit=OTHER_UNIT, co_units=f"{UNIT}、{UNIT}")
        assert status == 200  # a unit named twice is one co-handling unit
    assert (await case_of(h, number)).co_units == [UNIT]


# ---- grids ----------------------------------------------------------------------------------------------------


async def grid_tree(h) -> dict[str, areas.Area]:
    """云岩区 D1 / 中华路街道 S1 / 云城社区 C1 (第一网格 G1, 第二网格 G2) and 幸福社区 C2 (第一网格 G3): by code."""
    made: dict[str, areas.Area] = {}
    nodes = [
        ("district", "云岩区", None, "D1"),
        ("street", "中华路街道", "D1", "S1"),
        ("community", "云城社区", "S1", "C1"),
        ("community", "幸福社区", "S1", "C2"),
        ("grid", "第一网格", "C1", "G1"),
        ("grid", "第二网格", "C1", "G2"),
        ("grid", "第一网格", "C2", "G3"),
    ]
    async with h.app[STORE].write() as tx:
        for level, name, parent, code in nodes:
            parent_area = made[parent] if parent else None
            made[code] = await areas.add(tx, level, name, parent=parent_area, now=h.clock.now(), code=code)
    return made


async def put_in_grid(h, number: str, grid: areas.Area | None) -> None:
    """The grid the case was filed from, as cases.submit_complaint records the resident's."""
    async with h.app[STORE].write() as tx:
        await tx.run(
            "UPDATE cases SET grid_id = :grid WHERE number = :number", grid=grid.id if grid else None, number=number
        )


def listed(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('data-number="')[1:]]


async def test_the_inbox_filters_by_grid_and_by_community(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    tree = await grid_tree(h)
    one, two, other, none = await _many(h, 4)
    for number, grid in ((one, "G1"), (two, "G2"), (other, "G3")):
        await put_in_grid(h, number, tree[grid])
    async with Staff(h) as staff:
        await staff.login("张科员")
        _, page = await staff.get("/cases?grid=G1")
        assert listed(page) == [one]
        _, page = await staff.get("/cases?grid=C1")  # a community: every grid in it
        assert listed(page) == [one, two]
        _, page = await staff.get("/cases?view=all&grid=S1")
        assert listed(page) == [other, two, one]  # newest first; the case from no grid is not in the street
        _, page = await staff.get("/cases?grid=G3&category=其他")
        assert listed(page) == [other]
        _, page = await staff.get("/cases?grid=G3&category=邻里纠纷")
        assert listed(page) == []
        _, page = await staff.get("/cases?grid=NOSUCH")  # an unknown code filters nothing, as other values
        assert listed(page) == [one, two, other, none]
        # The form offers the tree, depth first and indented, the chosen node selected.
        _, page = await staff.get("/cases?grid=C2")
    options = re.findall(r'<option value="([A-Z0-9]+)" title="([^"]*)" (selected)?>([^<]*)</option>', page)
    assert [(code, title) for code, title, _, _ in options] == [
        ("D1", "云岩区"),
        ("S1", "云岩区/中华路街道"),
        ("C1", "云岩区/中华路街道/云城社区"),
        ("G1", "云岩区/中华路街道/云城社区/第一网格"),
        ("G2", "云岩区/中华路街道/云城社区/第二网格"),
        ("C2", "云岩区/中华路街道/幸福社区"),
        ("G3", "云岩区/中华路街道/幸福社区/第一网格"),
    ]
    assert [code for code, _, chosen, _ in options if chosen] == ["C2"]
    assert options[6][3] == "\u3000\u3000\u3000第一网格"


async def test_the_inbox_pages_through_a_grid_without_repeats_or_gaps(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_CONSOLE_PAGE_SIZE="10") as h:
        await add_operator(h, "张科员", "dispatcher")
        await add_operator(h, "街道小刘", "unit", unit=UNIT)
        tree = await grid_tree(h)
        numbers = await _many(h, 36)
        grids = [tree["G1"], tree["G2"], tree["G3"]]  # C1, C1, C2 in turn
        theirs = []  # the unit handler's in C1: led (i % 4 == 1) or co-handled (i % 4 == 3)
        for i, number in enumerate(numbers):
            await put_in_grid(h, number, grids[i % 3])
            if i % 2:
                await do(h, "accept", number)
                if i % 4 == 1:
                    await do(h, "assign", number, unit=UNIT)
                else:
                    await do(h, "assign", number, unit=OTHER_UNIT, co_units=[UNIT])
                if i % 3 != 2:
                    theirs.append(number)
        in_c1 = [n for i, n in enumerate(numbers) if i % 3 != 2]
        # By deadline: the pending ones (due 15 days after they came in), then the handled ones (all accepted at
        # the same moment: due together, by id).
        pending_first = [n for i, n in enumerate(numbers) if i % 3 != 2 and not i % 2]
        pending_first += [n for i, n in enumerate(numbers) if i % 3 != 2 and i % 2]

        async def every_page(staff: Staff, path: str) -> list[str]:
            seen: list[str] = []
            for _ in range(10):
                _, page = await staff.get(path)
                seen += listed(page)
                if 'rel="next"' not in page:
                    return seen
                path = "/cases?" + page.split('rel="next" href="?')[1].split('"')[0].replace("&amp;", "&")
            raise AssertionError("more pages than cases")

        async with Staff(h) as staff:
            await staff.login("张科员")
            assert await every_page(staff, "/cases?view=all&grid=C1") == in_c1[::-1]
            assert await every_page(staff, "/cases?grid=C1") == pending_first
            assert await every_page(staff, "/cases?grid=G3&view=pending") == numbers[2::6][::-1]  # newest first
        async with Staff(h) as staff:
            await staff.login("街道小刘")  # led and co-handled cases merged page by page, the grid filter on both
            assert len(theirs) > 5 and await every_page(staff, "/cases?view=all&grid=C1") == theirs[::-1]
            assert await every_page(staff, "/cases?grid=C1") == theirs
