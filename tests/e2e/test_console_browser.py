"""The console in a real browser (Chromium through Playwright): what staff see and do, with the page's own
forms, cookies, scripts and Content-Security-Policy — what the HTTP tests of tests/test_console.py cannot see."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from playwright.async_api import Page, Response, expect

from tests.console_client import PASSWORD, add_operator
from tests.e2e.conftest import SCREENSHOTS, screenshot, sign_in
from tests.test_console import audit_rows, status_of
from tests.test_lifecycle import case_of, do, filed, pushed_after_delivery

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"
FORBIDDEN = "您没有权限查看这个页面或执行这个操作。"
CSRF_REFUSED = "表单已过期或来源不明"


def fold(page: Page, action: str):
    """The case page's fold (<details>) of one action, found by its title (受理, 交办, 答复群众 …)."""
    title = page.locator("summary", has_text=re.compile(f"^{re.escape(action)}$"))
    return page.locator("details", has=title)


async def act(page: Page, action: str, **fields: str) -> Response:
    """Opens the action's fold, fills its form's fields (by name), presses its button; the page it leads to."""
    form = fold(page, action)
    if not await form.evaluate("details => details.open"):
        await form.locator("summary").click()
    for name, value in fields.items():
        await form.locator(f'[name="{name}"]').fill(value)
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name=action, exact=True).click()
    response = await navigation.value
    assert response is not None
    return response


async def open_from_inbox(page: Page, number: str) -> None:
    await page.locator(f'tr[data-number="{number}"] a', has_text=number).click()
    await page.wait_for_url(f"**/console/cases/{number}")
    await expect(page.locator("h1")).to_contain_text(number)


async def test_a_complaint_appears_live_and_a_reply_typed_in_the_console_reaches_the_residents_wechat(harness, console):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    openid = "o_browser_loop"
    page = await console.page()

    # A stranger is sent to the sign-in form.
    await page.goto("/console/")
    await page.wait_for_url("**/console/login**")
    await sign_in(page, "张科员")
    await expect(page.locator("p.empty")).to_be_visible()  # nothing yet
    await page.wait_for_timeout(1500)  # the live feed's first look at the database sets where it starts
    number = await filed(h, openid)  # through the signed, encrypted webhook, while the inbox is open
    row = page.locator(f'tr[data-number="{number}"]')
    await expect(row).to_be_visible(timeout=8000)  # no reload: the row came over the event stream
    await expect(page.locator("#live")).to_contain_text(f"新案件 {number}")
    await expect(row).to_contain_text("物业与停车")
    await expect(row).to_contain_text("云城街道某某小区3栋")
    await expect(row).to_contain_text("待受理")

    await open_from_inbox(page, number)
    await expect(page.locator("h1 .status")).to_have_text("待受理")
    assert (await act(page, "受理")).status == 200
    await expect(page.locator(".done")).to_have_text("已完成：受理。")
    assert (await act(page, "交办", unit=UNIT)).status == 200
    await expect(page.locator(".done")).to_have_text("已完成：交办。")
    await expect(page.locator("h1 .status")).to_have_text("已交办")

    # Signing out, and in again as the unit's handler, in the same window.
    async with page.expect_navigation():
        await page.get_by_role("button", name="退出", exact=True).click()
    await page.wait_for_url("**/console/login")
    await sign_in(page, "街道小刘")
    await open_from_inbox(page, number)
    assert (await act(page, "开始办理")).status == 200
    await expect(page.locator(".done")).to_have_text("已完成：开始办理。")
    await expect(page.locator(".window")).to_contain_text("客服消息窗口开着")

    reply = "已约谈物业，停车费调整为每月100元。"
    await expect(fold(page, "答复群众").get_by_label("答复内容")).to_be_visible()  # open without a click
    response = await act(page, "答复群众", text=reply)
    assert response.status == 200 and response.url.endswith(f"/console/cases/{number}?done=reply")
    await expect(page.locator(".done")).to_have_text("已完成：答复群众。")
    await expect(page.locator("h1 .status")).to_have_text("已答复")
    await expect(page.locator(".facts")).to_contain_text(reply)

    case = await case_of(h, number)
    assert (case.status, case.reply_text) == ("replied", reply)
    assert [(e.action, e.actor) for e in case.events[-4:]] == [
        ("accepted", "张科员"),
        ("assigned", "张科员"),
        ("started", "街道小刘"),
        ("replied", "街道小刘"),
    ]
    assert any(reply in (text or "") for text in await pushed_after_delivery(h, openid))


async def test_a_unit_handler_cannot_open_another_units_case_by_its_url(harness, console):
    h = harness
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    mine, theirs = await filed(h, "o_mine"), await filed(h, "o_theirs")
    for number, unit in ((mine, UNIT), (theirs, OTHER_UNIT)):
        await do(h, "accept", number)
        await do(h, "assign", number, unit=unit)
    page = await console.signed_in("街道小刘")
    await expect(page.locator(f'tr[data-number="{mine}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-number="{theirs}"]')).to_have_count(0)

    response = await page.goto(f"/console/cases/{theirs}")
    assert response is not None and response.status == 403
    await expect(page.locator("main")).to_contain_text(FORBIDDEN)
    assert theirs not in await page.locator("main").inner_text()  # nothing of the case shows

    # Their own case opens; pointing its form at the other case is refused on the server too.
    response = await page.goto(f"/console/cases/{mine}")
    assert response is not None and response.status == 200
    start = fold(page, "开始办理").locator("form")
    await start.evaluate("(form, action) => { form.action = action; }", f"/console/cases/{theirs}/start")
    response = await act(page, "开始办理")
    assert response.status == 403 and response.url.endswith(f"/console/cases/{theirs}/start")
    await expect(page.locator("main")).to_contain_text(FORBIDDEN)
    assert await status_of(h, theirs) == "assigned"
    refused = [(a.action, a.target) for a in await audit_rows(h) if a.outcome == "refused"]
    assert refused == [("view_case", theirs), ("view_case", theirs)]


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(harness, console):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_csrf")

    # The sign-in form too: without its token, no session.
    page = await console.page()
    await page.goto("/console/login")
    await page.locator('form input[name="csrf"]').evaluate("input => input.remove()")
    await page.get_by_label("用户名").fill("张科员")
    await page.get_by_label("密码").fill(PASSWORD)
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="登录", exact=True).click()
    assert (await navigation.value).status == 403
    await expect(page.locator("main")).to_contain_text(CSRF_REFUSED)
    assert not [c for c in await page.context.cookies() if c["name"] == "fd_session"]

    await sign_in(page, "张科员")
    await page.goto(f"/console/cases/{number}")
    accept = fold(page, "受理").locator("form")
    removed = await accept.evaluate(
        "form => { const token = form.querySelector('input[name=csrf]'); token.remove(); return token.value.length; }"
    )
    assert removed > 0
    response = await act(page, "受理")
    assert response.status == 403 and response.request.method == "POST"
    await expect(page.locator("main")).to_contain_text(CSRF_REFUSED)
    assert await status_of(h, number) == "pending"
    assert [a.action for a in await audit_rows(h) if a.outcome == "refused"] == ["login", "csrf_refused"]

    # The same form with its token goes through: it was the token that was missing, nothing else.
    await page.goto(f"/console/cases/{number}")
    await expect(page.locator("h1 .status")).to_have_text("待受理")
    assert (await act(page, "受理")).status == 200
    await expect(page.locator(".done")).to_have_text("已完成：受理。")
    assert await status_of(h, number) == "accepted"


def _chinese_fonts() -> set[str]:
    """Families fontconfig says cover Chinese (every name of each: 'WenQuanYi Micro Hei,文泉驿微米黑')."""
    if shutil.which("fc-list") is None:
        return {"WenQuanYi Micro Hei", "Noto Sans CJK SC", "Droid Sans Fallback"}
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False).stdout
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


async def fonts_of(page: Page, selector: str) -> dict[str, int]:
    """The fonts Chromium drew the text of `selector` with, and how many glyphs from each (DevTools' CSS domain)."""
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("DOM.enable")
        await cdp.send("CSS.enable")
        root = await cdp.send("DOM.getDocument", {"depth": 0})
        node = await cdp.send("DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": selector})
        assert node["nodeId"], f"no {selector} on {page.url}"
        found = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
    finally:
        await cdp.detach()
    return {font["familyName"]: font["glyphCount"] for font in found["fonts"]}


async def assert_drawn_in_chinese(page: Page, selector: str, text: str) -> None:
    await expect(page.locator(selector).first).to_have_text(text)
    fonts = await fonts_of(page, selector)
    chinese = _chinese_fonts()
    assert fonts and set(fonts) <= chinese, (
        f"{selector} on {page.url} drawn with {fonts}, not a Chinese font (Debian: fonts-wqy-microhei; `make test`)"
    )
    assert sum(fonts.values()) >= len(text), fonts


async def test_pages_render_chinese_and_are_kept_as_screenshots(harness, console):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_screens")
    page = await console.page()
    await page.goto("/console/login")
    assert await page.evaluate("[document.documentElement.lang, document.characterSet]") == ["zh-CN", "UTF-8"]
    await assert_drawn_in_chinese(page, "h1", "工作人员登录")
    await screenshot(page, "login.png")

    await sign_in(page, "张科员")
    await assert_drawn_in_chinese(page, "h1", "案件")
    await assert_drawn_in_chinese(page, f'tr[data-number="{number}"] td:nth-child(3)', "物业与停车")
    await screenshot(page, "inbox.png")

    await open_from_inbox(page, number)
    await assert_drawn_in_chinese(page, "dd.story", "物业把停车费定为每月160元，业主都觉得太高了")
    await assert_drawn_in_chinese(page, "h1 .status", "待受理")
    await screenshot(page, "case.png")

    await page.get_by_role("link", name="统计", exact=True).click()
    await page.wait_for_url("**/console/dashboard**")
    await assert_drawn_in_chinese(page, "h1", "统计")
    await screenshot(page, "dashboard.png")
    for name in ("login.png", "inbox.png", "case.png", "dashboard.png"):
        path = SCREENSHOTS / name
        assert path.stat().st_size > 10_000, f"{path} looks empty"


async def test_the_browser_console_stays_clean_and_a_csp_violation_would_be_caught(harness, console):
    """Every test's pages are watched (the `console` fixture fails a test on any error the browser logs); this
    one walks the rest of the console — filters, paging, a page not found, signing out — and proves the watch
    works: an inline script, which the Content-Security-Policy forbids, is refused and reported."""
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_clean")
    page = await console.signed_in("张科员")
    await page.locator('select[name="view"]').select_option("all")
    await page.get_by_placeholder("搜索编号或内容").fill(number)
    async with page.expect_navigation():
        await page.get_by_role("button", name="筛选", exact=True).click()
    assert "view=all" in page.url
    await expect(page.locator("tr[data-number]")).to_have_count(1)
    response = await page.goto("/console/cases/XF20000101-9999")
    assert response is not None and response.status == 404
    await expect(page.locator("main")).to_contain_text("没有找到这个页面。")
    await page.goto(f"/console/cases/{number}")
    assert console.problems() == []

    outcome = await page.evaluate(
        """() => new Promise(resolve => {
            document.addEventListener("securitypolicyviolation", (event) =>
                resolve({ran: window.injected === true, refused: event.effectiveDirective}));
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);  // an inline script runs, if it may, before append returns
            setTimeout(() => resolve({ran: window.injected === true, refused: null}), 2000);
        })"""
    )
    assert outcome == {"ran": False, "refused": "script-src-elem"}  # refused by the policy, not run
    caught = console.take("Content Security Policy")
    assert caught and "script-src 'self'" in caught[0], console.problems()

    async with page.expect_navigation():
        await page.get_by_role("button", name="退出", exact=True).click()
    await page.wait_for_url("**/console/login")
