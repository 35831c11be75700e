"""The case page shows the conversation with the resident — what they wrote, the bot's answers, each notice with
how its delivery went — and serves the case's photos to those who may see the case, and only theirs."""

import pytest

from bot import app as app_module
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.test_lifecycle import do

STORY = "物业把停车费定为每月160元，业主认为太高"
PHOTO = b"\xff\xd8\xff\xe0 the entrance blocked"


@pytest.fixture
async def media_harness(db_url, clock, tmp_path):
    env = {"FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media"), "FRONTDOOR_WECHAT_API_MAX_RETRIES": "0"}
    async with start_harness(db_url, clock, **env) as h:
        yield h


async def file_with_photo(h, openid: str) -> str:
    r = h.resident(openid)
    await r.say("投诉")
    await r.say("1")
    await r.say("云城街道某某小区3栋")
    await r.photo("m_gate")
    await r.say(STORY)
    await r.say("13812345678")
    reply = await r.say("提交")
    return reply.split("案件编号：")[1].split("。")[0]


async def test_the_conversation_and_the_photo_are_on_the_case_page(media_harness):
    h = media_harness
    await add_operator(h, "张科员", "dispatcher")
    number = await file_with_photo(h, "o_conv")
    h.fake.add_media("m_gate", PHOTO, "image/jpeg")
    assert await h.app[app_module.MEDIA].tick() == 1
    await do(h, "accept", number)
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.get(f"/cases/{number}")
        assert status == 200
        conversation = page.split('class="conversation"')[1].split("</ol>")[0]
        # The resident's words and the bot's questions, in order; the photo; the acceptance notice, delivered.
        said = [conversation.index(text) for text in ("投诉", "云城街道某某小区3栋", STORY, f"案件编号：{number}")]
        assert said == sorted(said)
        assert "第 2 步" in conversation and "机器人" in conversation
        assert f"/console/cases/{number}/media/m_gate" in conversation
        assert "已受理" in conversation and "已送达" in conversation
        async with staff.http.get(f"{staff.base}/cases/{number}/media/m_gate") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
            assert await resp.read() == PHOTO
        assert (await staff.get(f"/cases/{number}/media/m_other"))[0] == 404  # not this case's file


async def test_another_units_handler_cannot_fetch_the_photo(media_harness):
    h = media_harness
    await add_operator(h, "环保小吴", "unit", unit="生态环境局")
    number = await file_with_photo(h, "o_conv_other")
    h.fake.add_media("m_gate", PHOTO, "image/jpeg")
    await h.app[app_module.MEDIA].tick()
    await do(h, "accept", number)
    await do(h, "assign", number, unit="云城街道办事处")
    async with Staff(h) as staff:
        await staff.login("环保小吴")
        async with staff.http.get(f"{staff.base}/cases/{number}/media/m_gate") as resp:
            assert resp.status == 403 and await resp.read() != PHOTO


async def test_a_unit_handler_sees_only_this_cases_notices_when_the_resident_has_others_elsewhere(harness):
    from bot.app import STORE
    from bot.services import cases

    h = harness
    await add_operator(h, "街道小刘", "unit", unit="云城街道办事处")
    numbers = []
    for story in ("小区停车收费过高", "工地夜间施工噪音"):
        async with h.app[STORE].write() as tx:
            new = cases.NewComplaint("o_two_cases", "其他", "某路1号", None, None, story, [], [], None)
            numbers.append(
                await cases.submit_complaint(
                    tx, new, now=h.clock.now(), tz=h.settings.tz, prefix="XF", acceptance_days=15
                )
            )
    mine, theirs = numbers
    for number, unit in ((mine, "云城街道办事处"), (theirs, "生态环境局")):
        await do(h, "accept", number)
        await do(h, "assign", number, unit=unit)
    await do(h, "start", theirs)
    await do(h, "reply", theirs, text="经查明，秘密内容只给环保局看")
    async with Staff(h) as staff:
        await staff.login("街道小刘")
        status, page = await staff.get(f"/cases/{mine}")
    assert status == 200
    assert "秘密内容" not in page and theirs not in page
    assert "这里只显示与本案有关的通知" in page
    assert f"案件 {mine}" in page.split('class="conversation"')[1]  # this case's own notices are there
