"""A poll's results page in a real browser: the bar chart (WeChat and door-to-door votes as two segments), a
door-to-door vote entered through the page's own form, under the console's Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from bot.app import STORE
from bot.services import areas, polls
from tests.console_client import add_operator
from tests.e2e.conftest import screenshot
from tests.polls_setup import build_city, make_poll

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_the_results_page_draws_the_votes_and_takes_a_door_to_door_vote(harness, console):
    h = harness
    city = await build_city(h)
    await add_operator(h, "张科员", "dispatcher")
    poll_id = await make_poll(h, [city.grid1.id])
    async with h.app[STORE].write() as tx:
        poll = await polls.get(tx, poll_id)
        for openid, choice in (("o_1", 1), ("o_2", 1), ("o_3", 2)):
            await areas.join(tx, openid, city.grid1, h.clock.now())
            await polls.vote(tx, poll, openid, [choice], now=h.clock.now())

    page = await console.signed_in("张科员")
    await page.get_by_role("link", name="意见征集", exact=True).click()
    await page.get_by_role("link", name=poll.question).click()
    await page.wait_for_url(f"**/console/polls/{poll_id}")
    await expect(page.locator("h1")).to_contain_text(f"意见征集 {poll_id}")

    rows = page.locator("#results tr[data-option]")
    await expect(rows).to_have_count(3)
    await expect(rows.locator("th")).to_have_text(["1. 接受", "2. 不接受", "3. 希望降低"])
    chart = page.get_by_role("img", name="接受：微信 2 票，入户 0 票，占 66.7%")
    await expect(chart).to_be_visible()
    assert await chart.locator("rect.bar-wechat").get_attribute("width") == "100.0"

    # A household's answer, through the page's form: the door-to-door segment appears.
    form = page.locator("form", has=page.get_by_label("门牌号或户主姓名"))
    await form.get_by_label("门牌号或户主姓名").fill("3栋501")
    await form.get_by_label("2. 不接受").check()
    async with page.expect_navigation():
        await form.get_by_role("button", name="记录").click()
    await expect(page.locator(".done")).to_have_text("已记录入户收集的意见。")
    second = rows.nth(1)
    await expect(second.locator("td.wechat")).to_have_text("1")
    await expect(second.locator("td.door")).to_have_text("1")
    await expect(second.locator("td.share")).to_have_text("50%")
    await expect(page.get_by_role("img", name="不接受：微信 1 票，入户 1 票，占 50%")).to_be_visible()
    door = second.locator("rect.bar-door")
    assert await door.get_attribute("x") == "50.0" and await door.get_attribute("width") == "50.0"
    box = await door.bounding_box()
    assert box is not None and box["width"] > 10  # drawn, coloured by the stylesheet, not blocked by the CSP
    await expect(page.locator("#n-door")).to_have_text("1")
    await expect(page.locator("#ballots")).to_contain_text("3栋501")
    await screenshot(page, "poll-results.png")


async def test_a_grids_poster_shows_its_qr_code(harness, console):
    h = harness
    city = await build_city(h)
    await add_operator(h, "张科员", "dispatcher")
    page = await console.signed_in("张科员")
    await page.get_by_role("link", name="网格", exact=True).click()
    row = page.locator(f'tr[data-code="{city.grid1.code}"]')
    await row.get_by_role("link", name="二维码海报").click()
    await page.wait_for_url(f"**/console/grids/{city.grid1.code}/qr")
    await expect(page.locator("#poster h1")).to_have_text("扫码加入第一网格")
    box = await page.locator("#poster svg.qr").bounding_box()
    assert box is not None and box["width"] > 200 and abs(box["width"] - box["height"]) < 1
    await screenshot(page, "grid-poster.png")
