"""Recording a visit (走访) in the console in a real browser: the form on the page, under the console's
Content-Security-Policy, and the visit's page and the case's after it."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.console_client import add_operator
from tests.e2e.conftest import screenshot
from tests.polls_setup import build_city, join
from tests.test_lifecycle import filed

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_a_visit_is_recorded_through_the_console(harness, console):
    h = harness
    city = await build_city(h)
    await join(h, "o_res", city.grid1)
    number = await filed(h, "o_res")
    await add_operator(h, "张科员", "dispatcher")

    page = await console.signed_in("张科员")
    await page.get_by_role("link", name="走访", exact=True).click()
    await page.wait_for_url("**/console/visits")
    await expect(page.locator("#visits .empty")).to_be_visible()
    await page.get_by_role("link", name="安排或记录走访").click()
    form = page.locator("#record-visit form")
    await form.get_by_label("案件编号（多个用空格隔开）").fill(number)
    await form.get_by_label("走访的网格或社区").select_option(label=city.grid1.path)
    await form.get_by_label("检察院").check()
    await form.get_by_label("司法局").check()
    await form.get_by_label("其他单位或人员（用逗号隔开）").fill("街道办事处，村委会")
    await form.get_by_label("地点", exact=True).fill("云城小区3栋")
    await form.get_by_label("见到的人").fill("当事人张某及其家属")
    await form.get_by_label("商定事项").fill("物业同意停车费按每月120元执行")
    await form.get_by_label("所带案件都已当场化解").check()
    async with page.expect_navigation():
        await form.get_by_role("button", name="记录走访").click()
    await expect(page.locator(".done")).to_have_text("已记录走访。")
    facts = page.locator("#visit-facts")
    await expect(facts).to_contain_text("云城小区3栋")
    await expect(facts).to_contain_text("检察院、司法局、街道办事处、村委会")
    await expect(facts).to_contain_text("当场化解")
    await screenshot(page, "visit.png")

    await facts.get_by_role("link", name=number).click()
    await page.wait_for_url(f"**/console/cases/{number}")
    await expect(page.locator("#case-visits")).to_contain_text("已走访")
    await page.get_by_role("link", name="走访", exact=True).click()
    await expect(page.locator("#visits tr[data-visit]")).to_have_count(1)
    await expect(page.locator("#visits tr[data-visit]")).to_contain_text("云城小区3栋")
