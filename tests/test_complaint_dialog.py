"""A resident files a complaint through the webhook, in safe mode, as WeChat delivers it."""

import asyncio
import json

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.app import STORE
from bot.cli import main
from bot.wechat import simulator
from storage.models import Case, DialogState
from tests.conftest import start_harness

STORY = "物业把停车费定为每月160元，业主都觉得太高了"


async def to_summary(r, *, category="1", place="云城街道某某小区3栋", phone="跳过") -> str:
    """Answer every question; the summary the resident is shown."""
    for text in ("投诉", category, place, STORY):
        await r.say(text)
    return await r.say(phone)


async def file_complaint(r, *, phone="13812345678") -> str:
    await to_summary(r, phone=phone)
    return await r.say("提交")


async def only_case(h) -> Case:
    """The one stored case, read through the ORM — the way staff tools read what the webhook wrote."""
    async with h.db.read() as s:
        found = list(await s.scalars(select(Case).options(selectinload(Case.events))))
    assert len(found) == 1
    return found[0]


async def test_full_complaint_creates_a_pending_case_with_every_answer(harness):
    r = harness.resident("o_wang")
    first = await r.say("我要投诉")
    assert "第 1 步" in first and "1. 物业与停车" in first and "6. 其他" in first
    assert "第 2 步" in await r.say("1")
    assert "第 3 步" in await r.say("云城街道某某小区3栋")
    assert "已收到照片（共 1 张）" in await r.photo("media_photo_1")
    assert "第 4 步" in await r.say(STORY)
    summary = await r.say("138 1234 5678")
    assert "1. 问题类别：物业与停车" in summary
    assert "2. 地点：云城街道某某小区3栋" in summary
    assert f"3. 问题描述：{STORY}（附照片 1 张）" in summary
    assert "4. 联系电话：13812345678" in summary
    done = await r.say("提交")
    case = await only_case(harness)
    assert f"案件编号：{case.number}" in done and "15 日内" in done
    assert case.number.startswith("XF20261125-")
    assert (case.openid, case.category, case.place_label) == ("o_wang", "物业与停车", "云城街道某某小区3栋")
    assert case.description == STORY and case.photo_media_ids == ["media_photo_1"]
    assert case.contact_phone == "13812345678" and case.status == "pending"
    assert [(e.action, e.to_status, e.actor) for e in case.events] == [("submitted", "pending", "resident")]
    async with harness.db.read() as s:
        assert await s.get(DialogState, "o_wang") is None  # the draft is gone once submitted


async def test_location_message_keeps_coordinates_and_label(harness):
    r = harness.resident("o_loc")
    await r.say("投诉")
    await r.say("2")
    assert "第 3 步" in await r.location(26.647, 106.6302, "贵阳市白云区云城街道")
    await r.say(STORY)
    summary = await r.say("跳过")
    assert "贵阳市白云区云城街道（位置：26.647, 106.6302）" in summary
    assert "4. 联系电话：未填写" in summary
    await r.say("提交")
    case = await only_case(harness)
    assert (case.latitude, case.longitude, case.place_label) == (26.647, 106.6302, "贵阳市白云区云城街道")
    assert case.contact_phone is None


async def test_voice_recognition_counts_as_the_description(harness):
    r = harness.resident("o_voice")
    await r.say("投诉")
    await r.say("5")
    await r.say("花溪区某某路口")
    assert "语音已保存，但没能识别出文字" in await r.voice("voice_1", None)
    assert "第 4 步" in await r.voice("voice_2", "晚上十二点以后工地还在施工噪音很大")
    await r.say("0851-86123456")
    await r.say("提交")
    case = await only_case(harness)
    assert case.description == "晚上十二点以后工地还在施工噪音很大"
    # the unrecognised recording is kept too: staff can listen to it
    assert case.voice_media_ids == ["voice_1", "voice_2"] and case.contact_phone == "0851-86123456"


async def test_invalid_answers_explain_and_offer_a_person_after_three_tries(harness):
    r = harness.resident("o_typo")
    await r.say("投诉")
    first = await r.say("9")
    assert "请回复 1 到 6 之间的数字" in first and "第 1 步" in first and "人工" not in first
    await r.say("随便")
    third = await r.say("不知道")
    assert "如需工作人员帮助，请回复“人工”" in third
    assert "第 2 步" in await r.say("１")  # a full-width digit from a Chinese keyboard is fine
    assert "太短" in await r.say("a")
    await r.say("观山湖区某某小区")
    assert "至少用 5 个字" in await r.say("吵")
    await r.say(STORY)
    assert "电话号码格式不对" in await r.say("12345")


async def test_back_help_cancel_and_human(harness):
    r = harness.resident("o_cmds")
    await r.say("投诉")
    assert "已经是第一步" in await r.say("返回")
    await r.say("3")
    back = await r.say("返回")
    assert "回到上一步" in back and "第 1 步" in back
    await r.say("4")
    helped = await r.say("帮助")
    assert "当前问题：第 2 步" in helped and "取消" in helped and "人工" in helped
    human = await r.say("人工")
    assert "已记下您需要人工帮助" in human and "第 2 步" in human
    async with harness.db.read() as s:
        state = await s.get(DialogState, "o_cmds")
        assert state.needs_human and state.data["category"] == "房屋损坏"  # kept and flagged for staff
    assert "第 3 步" in await r.say("乌当区某某村")  # and the resident may carry on
    assert "已取消" in await r.say("取消")
    async with harness.db.read() as s:
        assert await s.get(DialogState, "o_cmds") is None
        assert list(await s.scalars(select(Case))) == []


async def test_summary_edit_by_number_returns_to_the_summary(harness):
    r = harness.resident("o_edit")
    await r.say("投诉")
    await r.say("1")
    await r.say("云城街道A小区")
    await r.say(STORY)
    await r.say("13812345678")
    edit = await r.say("修改 2")
    assert "请重新填写第 2 项“地点”" in edit
    summary = await r.say("云城街道B小区5栋")
    assert "2. 地点：云城街道B小区5栋" in summary and "1. 问题类别：物业与停车" in summary
    assert "请回复“提交”确认" in await r.say("嗯")
    assert "编号 1–4" in await r.say("修改 9")
    back = await r.say("返回")  # from the summary, back to the last question
    assert "第 4 步" in back
    await r.say("跳过")
    await r.say("提交")
    case = await only_case(harness)
    assert case.place_label == "云城街道B小区5栋" and case.contact_phone is None


async def test_photos_at_any_step_and_just_after_submitting_join_the_complaint(harness):
    r = harness.resident("o_late_photo")
    await r.say("投诉")
    early = await r.photo("m_early")  # before even choosing a category
    assert "已收到照片（共 1 张），会随投诉一并提交" in early and "第 1 步" in early
    await r.say("4")
    await r.say("村里")
    await r.say("施工渣土砸坏了门窗，墙也裂了，下雨漏水")
    late = await r.photo("m_late")
    assert "已收到照片（共 2 张），会随投诉一并提交" in late and "第 4 步" in late
    await r.say("跳过")
    at_summary = await r.photo("m_later")
    assert (
        "共 3 张" in at_summary and "3. 问题描述：施工渣土砸坏了门窗，墙也裂了，下雨漏水（附照片 3 张）" in at_summary
    )
    number = (await r.say("提交")).split("案件编号：")[1].split("。")[0]
    assert await r.photo("m_after") == f"已把这张照片补充到案件 {number}。"
    case = await only_case(harness)
    assert case.photo_media_ids == ["m_early", "m_late", "m_later", "m_after"]
    assert [e.action for e in case.events] == ["submitted", "photo_added"]
    harness.clock.advance(hours=1)
    fresh = await r.photo("m_much_later")  # no longer obviously about that case: a new complaint begins with it
    assert "已收到照片（共 1 张）" in fresh and "第 1 步" in fresh


async def test_idle_draft_is_offered_back_after_timeout(harness):
    r = harness.resident("o_idle")
    await r.say("投诉")
    await r.say("1")
    harness.clock.advance(minutes=31)
    offer = await r.say("云城街道")
    assert "尚未提交的“投诉”草稿（已填写 1/4 项）" in offer
    assert "请回复 1 继续" in await r.say("什么")
    assert "第 2 步" in await r.say("1")
    await r.say("云城街道某某小区")
    harness.clock.advance(hours=2)
    await r.say("随便")
    restarted = await r.say("2")
    assert "重新开始" in restarted and "第 1 步" in restarted


async def test_idle_draft_at_summary_resumes_at_summary(harness):
    r = harness.resident("o_idle_sum")
    await to_summary(r, place="云城街道")
    harness.clock.advance(minutes=45)
    assert "草稿（已填写 4/4 项）" in await r.say("提交")
    assert "请核对" in await r.say("1")
    assert "案件编号" in await r.say("提交")


async def test_menu_click_starts_the_complaint_and_offers_an_existing_draft(harness):
    r = harness.resident("o_menu")
    assert "第 1 步" in await r.event("CLICK", "COMPLAINT")
    await r.say("2")
    assert "草稿" in await r.event("CLICK", "COMPLAINT")


async def test_my_cases_and_query_only_show_the_residents_own(harness):
    wang, li = harness.resident("o_wang"), harness.resident("o_li")
    assert "还没有提交过案件" in await wang.say("我的案件")
    done = await file_complaint(wang)
    number = done.split("案件编号：")[1].split("。")[0]
    listing = await wang.say("我的案件")
    assert f"{number}｜物业与停车｜待受理" in listing
    detail = await wang.say(f"查询 {number}")
    assert f"案件编号：{number}" in detail and "状态：待受理" in detail and STORY in detail
    assert "办理记录" in detail and "群众通过微信提交" in detail
    assert "案件编号" in await wang.say(f"查询{number.lower().replace('-', '')}")  # typed loosely
    assert "没有找到" in await li.say(f"查询 {number}")  # someone else's case reads as not found
    assert "请在“查询”后面加上案件编号" in await li.say("查询")


async def test_help_welcome_and_unknown(harness):
    r = harness.resident("o_new")
    welcome = await r.event("subscribe")
    assert "欢迎关注" in welcome and "我的案件" in welcome and "查询" in welcome
    assert "我的案件" in await r.say("帮助")
    assert "没能理解" in await r.say("你好")
    video = simulator.message_xml("o_new", "video", {"MediaId": "v1", "ThumbMediaId": "t1"})
    assert "暂时无法处理这类消息" in await harness.wechat.post(harness.http, harness.webhook, video)
    started = await r.photo("m_stray")  # a photo out of the blue is where many complaints begin
    assert "已收到照片（共 1 张）" in started and "第 1 步" in started


async def test_cases_cli_lists_and_shows_json(harness, capsys, monkeypatch):
    await file_complaint(harness.resident("o_cli"))
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", harness.settings.database.url)
    assert await asyncio.to_thread(main, ["cases", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["category"] for c in listed] == ["物业与停车"]
    number = listed[0]["number"]
    assert await asyncio.to_thread(main, ["cases", "show", number, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ledger"][0]["action"] == "submitted" and shown["contact_phone"] == "13812345678"
    assert await asyncio.to_thread(main, ["cases", "show", "XF19990101-0001"]) == 1


async def test_staff_can_list_residents_waiting_for_a_person(harness, capsys, monkeypatch):
    r = harness.resident("o_needs_help")
    await r.say("投诉")
    await r.say("3")
    await r.say("人工")
    await harness.resident("o_fine").say("投诉")
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", harness.settings.database.url)
    assert await asyncio.to_thread(main, ["drafts", "list", "--human", "--json"]) == 0
    waiting = json.loads(capsys.readouterr().out)
    assert [(d["openid"], d["answers"]["category"]) for d in waiting] == [("o_needs_help", "土地与征收")]


async def test_the_published_menu_only_has_buttons_the_bot_answers(harness, capsys):
    from bot.menu import push_menu
    from bot.texts import Texts

    assert await push_menu(harness.settings, Texts(), api_base=harness.fake_url) == 0
    assert "自定义菜单已更新" in capsys.readouterr().out
    buttons = harness.fake.menu["button"]
    assert [b["name"] for b in buttons] == ["我要投诉", "我的案件", "使用帮助"]
    r = harness.resident("o_menu_all")
    replies = [await r.event("CLICK", b["key"]) for b in reversed(buttons)]
    assert "我的案件" in replies[0] and "还没有提交过案件" in replies[1] and "第 1 步" in replies[2]


async def test_commands_work_with_punctuation_and_by_voice(harness):
    r = harness.resident("o_spoken")
    assert "第 1 步" in await r.voice("v0", "投诉。")
    assert "第 2 步" in await r.voice("v1", "一。")  # speech recognition writes numbers as words
    assert "已取消" in await r.say("取消。")
    await r.say("我要投诉！")
    await r.say("3")
    await r.voice("v2", "乌当区某某村。")
    await r.voice("v3", "三个村民因为修高速占地的地界吵了九年")
    summary = await r.say("跳过")
    assert "2. 地点：乌当区某某村" in summary
    assert "案件编号" in await r.voice("v4", "提交。")


async def test_lookups_mid_dialog_answer_without_costing_the_step(harness):
    r = harness.resident("o_lookup")
    number = (await file_complaint(r)).split("案件编号：")[1].split("。")[0]
    await r.say("投诉")
    await r.say("2")
    mid = await r.say("我的案件")
    assert f"{number}｜物业与停车" in mid and "还没有填写完" in mid and "第 2 步" in mid
    assert f"案件编号：{number}" in await r.say(f"查询：{number.lower()}")
    assert "第 3 步" in await r.say("云城街道某某小区")  # the dialog carried on where it was


async def test_query_spellings_and_a_bare_number(harness):
    r = harness.resident("o_q")
    number = (await file_complaint(r)).split("案件编号：")[1].split("。")[0]
    digits = number[2:].replace("-", "")
    for asked in (f"查询 {number}", f"查询：{number}", f"查询案件{number}", f"查询 {digits}", number):
        assert f"案件编号：{number}" in await r.say(asked), asked
    assert "没有找到" in await r.say("查询 XF20200101-0009")


async def test_a_person_asked_for_while_filing_reaches_the_ledger(harness):
    r = harness.resident("o_human")
    await r.say("投诉")
    await r.say("人工")
    await file_complaint(r)
    case = await only_case(harness)
    assert [e.action for e in case.events] == ["submitted", "human_requested"]
    outside = await r.say("人工")
    assert "12345" in outside and "投诉" in outside


async def test_resume_offer_never_traps_the_resident(harness):
    r = harness.resident("o_trap")
    await r.say("投诉")
    await r.say("1")
    harness.clock.advance(minutes=40)
    assert "已取消" in await r.say("取消")  # cancelling needs no detour through the offer
    await r.say("投诉")
    await r.say("1")
    harness.clock.advance(minutes=40)
    assert "草稿" in await r.say("云城街道")
    assert "回复 1 继续" in await r.say("帮助")
    mid = await r.say("我的案件")
    assert "还没有提交过案件" in mid and "回复 1 继续" in mid
    assert "第 2 步" in await r.say("1")


async def test_an_untouched_dialog_just_carries_on_after_a_pause(harness):
    r = harness.resident("o_pause")
    await r.say("投诉")
    harness.clock.advance(hours=3)
    assert "第 2 步" in await r.say("1")  # nothing was filled in: no draft to offer back


async def test_an_edit_interrupted_by_a_pause_still_returns_to_the_summary(harness):
    r = harness.resident("o_edit_pause")
    await to_summary(r, place="云城街道")
    await r.say("修改 1")
    harness.clock.advance(hours=1)
    assert "已填写 4/4 项" in await r.say("2")
    assert "第 1 步" in await r.say("1")
    summary = await r.say("2")
    assert "请核对" in summary and "1. 问题类别：邻里纠纷" in summary


async def test_a_city_adds_the_words_its_residents_use(db_url, clock, tmp_path):
    override = tmp_path / "city.toml"
    override.write_text('[words]\ncomplaint = "投诉 我要举报"\ncancel = "取消 算了"\n', encoding="utf-8")
    async with start_harness(db_url, clock, FRONTDOOR_TEXTS_OVERRIDE_FILE=str(override)) as h:
        r = h.resident("o_city")
        assert "第 1 步" in await r.say("我要举报")
        assert "已取消" in await r.say("算了！")


async def test_a_complaint_told_in_one_go_is_kept(harness):
    r = harness.resident("o_one_go")
    first = await r.say("投诉 小区门口停车收费太贵了，物业一个月收160")
    assert "已记下您说的情况" in first and "第 1 步" in first
    await r.say("停车")  # the category named in words
    assert "第 4 步" in await r.say("云城街道某某小区")  # the story was told: not asked again
    summary = await r.say("跳过")
    assert "1. 问题类别：物业与停车" in summary and "3. 问题描述：小区门口停车收费太贵了，物业一个月收160" in summary
    other = harness.resident("o_blurts")
    await other.say("投诉")
    told = await other.say("我们小区物业把停车费涨到每月160元，业主都不同意，还把大门堵了")  # instead of a number
    assert "已记下您说的情况" in told and "第 1 步" in told
    await other.say("1")
    assert "第 4 步" in await other.say("白云区某某小区")
    third = harness.resident("o_unsolicited")
    started = await third.say("楼上装修天天早上七点就开始砸墙，吵得孩子没法睡觉")
    assert "已记下您说的情况" in started and "第 1 步" in started


async def test_a_story_in_several_clips_is_kept_whole(harness):
    r = harness.resident("o_clips")
    await r.say("投诉")
    await r.say("5")
    await r.say("花溪区某某小区")
    await r.voice("c1", "楼上那家天天晚上装修，")
    more = await r.voice("c2", "吵得我们老人睡不着觉，已经一个多月了。")
    assert "已补充到问题描述" in more and "第 4 步" in more
    await r.say("13812345678")
    assert "已补充到问题描述" in await r.say("物业也不管，打了好几次电话")  # even at the summary
    await r.say("提交")
    case = await only_case(harness)
    assert case.description.splitlines() == [
        "楼上那家天天晚上装修,",
        "吵得我们老人睡不着觉,已经一个多月了",
        "物业也不管,打了好几次电话",
    ] or ("一个多月" in case.description and "物业也不管" in case.description)
    assert case.voice_media_ids == ["c1", "c2"]


async def test_the_place_must_be_a_place(harness):
    r = harness.resident("o_place")
    await r.say("投诉")
    await r.say("1")
    assert "需要填写问题发生的地点" in await r.say("什么意思？")
    assert "太短" in await r.say("[微笑]")
    reminded = await r.say("投诉")  # starting again mid-dialog is not an address either
    assert "还没有填写完" in reminded and "第 2 步" in reminded
    assert "第 3 步" in await r.say("云城街道3栋2单元501")


async def test_phone_numbers_as_people_give_them(harness):
    for said, stored in (
        ("我的电话是13812345678。", "13812345678"),
        ("0086 13812345678", "13812345678"),
        ("0851-86123456转8001", "0851-86123456转8001"),
        ("不方便", None),
    ):
        r = harness.resident(f"o_phone_{stored}_{len(said)}")
        summary = await to_summary(r, phone=said)
        assert f"4. 联系电话：{stored or '未填写'}" in summary, said
    r = harness.resident("o_phone_voice")
    await to_summary(r, phone="跳过")
    await r.say("修改 4")
    assert "4. 联系电话：13812345678" in await r.voice("vp", "一三八一二三四五六七八。")


async def test_the_summary_takes_what_people_say(harness):
    r = harness.resident("o_summary_words")
    await to_summary(r)
    assert "请重新填写第 2 项“地点”" in await r.say("修改地点")
    await r.say("云城街道B小区")
    assert "请重新填写第 4 项" in await r.say("改4")
    await r.say("跳过")
    for _ in range(2):
        assert "人工" not in await r.say("嗯")
    assert "如需工作人员帮助" in await r.say("嗯")
    assert "案件编号" in await r.say("确认无误")


async def test_odd_digits_are_explained_not_crashed_on(harness):
    r = harness.resident("o_circled")
    await r.say("投诉")
    assert "请回复 1 到 6" in await r.say("⓵")
    await r.say("1")
    await r.say("云城街道")
    await r.say(STORY)
    await r.say("跳过")
    assert "请回复“提交”确认" in await r.say("修改 ⓶")


async def test_leaving_drops_the_draft_and_coming_back_says_where_things_are(harness):
    r = harness.resident("o_leaves")
    await to_summary(r, phone="13812345678")
    await r.event("unsubscribe")
    async with harness.db.read() as s:
        assert await s.get(DialogState, "o_leaves") is None  # their phone number went with them
    back = harness.resident("o_back")
    await back.say("投诉")
    await back.say("2")
    welcome = await back.event("subscribe")
    assert "欢迎关注" in welcome and "还没有填写完" in welcome and "第 2 步" in welcome


async def test_after_submitting_more_words_join_the_case_and_a_second_submit_is_understood(harness):
    r = harness.resident("o_after")
    number = (await file_complaint(r)).split("案件编号：")[1].split("。")[0]
    assert f"已经提交，案件编号 {number}" in await r.say("提交")
    assert f"已把您的补充说明记到案件 {number}" in await r.say("补充一下，物业还说不交停车费就不让进小区")
    case = await only_case(harness)
    assert [(e.action, e.note) for e in case.events][-1] == (
        "resident_note",
        "补充一下，物业还说不交停车费就不让进小区",
    )
    assert "没有听清" in await r.voice("v_unheard", None)


async def test_a_mobile_number_alone_is_not_a_case_number(harness):
    r = harness.resident("o_mobile")
    assert "没能理解" in await r.say("13812345678")


async def test_video_and_links_are_kept_as_evidence(harness):
    r = harness.resident("o_video")
    await r.say("投诉")
    await r.say("5")
    await r.say("工地旁边")
    video = simulator.message_xml("o_video", "video", {"MediaId": "vid1", "ThumbMediaId": "t"})
    assert "已收到视频（共 1 段）" in await harness.wechat.post(harness.http, harness.webhook, video)
    await r.say("晚上十二点以后还在施工，噪音很大")
    summary = await r.say("跳过")
    assert "（附视频 1 段）" in summary
    await r.say("提交")
    assert (await only_case(harness)).video_media_ids == ["vid1"]


async def test_a_photo_that_wakes_an_idle_draft_is_kept(harness):
    r = harness.resident("o_wake")
    await r.say("投诉")
    await r.say("4")
    await r.say("乌当区某某村")
    harness.clock.advance(hours=2)
    woke = await r.photo("m_wake")
    assert "已收到照片（共 1 张）" in woke and "草稿" in woke
    assert "第 3 步" in await r.say("1")
    await r.say("渣土车把我家院墙撞塌了一截")
    summary = await r.say("跳过")
    assert "（附照片 1 张）" in summary


async def test_a_second_report_of_the_same_matter_is_offered_to_join_the_first(harness):
    r = harness.resident("o_again")
    first = (await file_complaint(r)).split("案件编号：")[1].split("。")[0]
    harness.clock.advance(days=3)
    await to_summary(r, place="云城街道某某小区3栋东门")
    offer = await r.say("提交")
    assert f"反映过类似问题（案件 {first}）" in offer and "补充" in offer and "请核对" in offer
    assert f"已把这次反映的内容补充到案件 {first}" in await r.say("补充")
    async with harness.db.read() as s:
        found = list(await s.scalars(select(Case).options(selectinload(Case.events))))
    assert len(found) == 1 and found[0].events[-1].note.startswith("云城街道某某小区3栋东门：")
    await to_summary(r)
    await r.say("提交")
    second = (await r.say("提交")).split("案件编号：")[1].split("。")[0]  # asked once; again means a new case
    async with harness.db.read() as s:
        case = await s.scalar(select(Case).where(Case.number == second).options(selectinload(Case.events)))
    assert (case.events[-1].action, case.events[-1].note) == ("possible_repeat", first)


async def test_others_reporting_the_same_place_are_linked_for_staff(harness):
    first = (await file_complaint(harness.resident("o_neighbour_a"))).split("案件编号：")[1].split("。")[0]
    reply = await file_complaint(harness.resident("o_neighbour_b"))  # no offer: not their own case
    second = reply.split("案件编号：")[1].split("。")[0]
    async with harness.db.read() as s:
        case = await s.scalar(select(Case).where(Case.number == second).options(selectinload(Case.events)))
    assert [(e.action, e.note) for e in case.events][-1] == ("possible_repeat", first)


async def test_adding_to_an_earlier_case_keeps_voice_and_refuses_a_closed_case(harness):
    r = harness.resident("o_adds_voice")
    first = (await file_complaint(r)).split("案件编号：")[1].split("。")[0]
    for text in ("投诉", "1", "云城街道某某小区3栋"):
        await r.say(text)
    await r.voice("v_more", "物业今天又把大门锁了，车都出不去")
    await r.say("跳过")
    await r.say("提交")
    assert "补充到案件" in await r.say("补充")
    async with harness.db.read() as s:
        case = await s.scalar(select(Case).where(Case.number == first))
    assert case.voice_media_ids == ["v_more"]  # the recording went with the words
    await to_summary(r)
    assert "反映过类似问题" in await r.say("提交")
    async with harness.app[STORE].write() as tx:  # closed by staff before the resident answers the offer
        await tx.run("UPDATE cases SET status = 'closed' WHERE number = :n", n=first)
    assert "不能再补充" in await r.say("补充")
    assert "案件编号" in await r.say("提交")
