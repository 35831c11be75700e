"""Grid workers' opinion polls over chat: joining a grid, binding a worker, creating a poll in the dialog,
distribution under WeChat's window rules, voting every way, closing once across a restart."""

from __future__ import annotations

from datetime import timedelta

from bot.app import POLLS, STORE
from bot.services import areas, polls
from storage.fast import Conflict
from tests.conftest import start_harness
from tests.polls_setup import bound_worker, build_city, get_poll, invite, join, make_poll, menus_to, tally, tick


async def test_scanning_a_grid_poster_joins_the_grid(harness):
    city = await build_city(harness)
    newcomer = harness.resident("o_new")
    reply = await newcomer.scan(areas.scene_of(city.grid1), following=False)
    assert "您已加入网格：云岩区/中华路街道/云城社区/第一网格" in reply
    assert "欢迎关注" in reply
    follower = harness.resident("o_follower")
    await follower.event("subscribe")
    reply = await follower.scan(areas.scene_of(city.grid2), following=True)
    assert "第二网格" in reply
    assert "已在网格" in await follower.scan(areas.scene_of(city.grid2), following=True)
    assert "失效" in await follower.scan("grid:NOPE", following=True)
    async with harness.app[STORE].read() as tx:
        assert (await areas.grid_of(tx, "o_new")).id == city.grid1.id
        assert (await areas.grid_of(tx, "o_follower")).id == city.grid2.id
    # Unfollowing detaches them: the grid they joined is personal data too.
    await follower.event("unsubscribe")
    async with harness.app[STORE].read() as tx:
        assert await areas.grid_of(tx, "o_follower") is None


async def test_my_grid_dialog_chooses_and_changes_the_grid(harness):
    city = await build_city(harness)
    r = harness.resident("o_r")
    reply = await r.say("我的网格")
    assert "还没有加入网格" in reply and "社区" in reply
    reply = await r.say("云城社区")  # two grids there: a numbered list
    assert "1. 云岩区/中华路街道/云城社区/第一网格" in reply and "2." in reply
    reply = await r.say("2")
    assert "您已加入网格：云岩区/中华路街道/云城社区/第二网格" in reply
    reply = await r.say("我的网格")
    assert "您当前所在的网格：云岩区/中华路街道/云城社区/第二网格" in reply
    assert "没有找到" in await r.say("火星社区")
    assert "白云社区/第一网格" in await r.say("白云社区")  # only one grid there: joined at once
    async with harness.app[STORE].read() as tx:
        assert (await areas.grid_of(tx, "o_r")).id == city.other.id


async def test_invite_code_binds_a_grid_worker_once(harness):
    city = await build_city(harness)
    code = await invite(harness, "小王", city.yuncheng)
    worker = harness.resident("o_worker")
    assert "不正确" in await worker.say("绑定 ABCDEFGH")
    reply = await worker.say(f"绑定 {code.lower()}")  # typed in lower case on a phone
    assert "绑定成功" in reply and "小王" in reply and "云城社区" in reply
    assert "用过" in await harness.resident("o_someone").say(f"绑定 {code}")
    assert "发起投票" in await worker.say("网格员帮助")
    # A resident who is not a worker: 发起投票 is nothing to them.
    assert "第 1 步" not in await harness.resident("o_someone").say("发起投票")


async def test_an_expired_invite_is_refused(harness):
    city = await build_city(harness)
    code = await invite(harness, "小李", city.grid1)
    harness.clock.advance(hours=73)
    assert "过期" in await harness.resident("o_w").say(f"绑定 {code}")


async def _create_in_chat(worker, *, settings="默认", audience="我的网格", closing="3小时", reminder="不提醒") -> str:
    assert "第 1 步" in await worker.say("发起投票")
    assert "第 2 步" in await worker.say("小区停车费定为每月160元，您是否接受？")
    assert "第 3 步" in await worker.say("接受/不接受/希望降低收费")
    assert "第 4 步" in await worker.say(settings)
    assert "第 5 步" in await worker.say(audience)
    assert "第 6 步" in await worker.say(closing)
    summary = await worker.say(reminder)
    assert "请核对" in summary
    return await worker.say("提交")


async def test_a_worker_creates_a_poll_in_chat_and_it_reaches_the_grid(harness):
    h = harness
    city = await build_city(h)
    worker = await bound_worker(h, "o_worker", "小王", city.yuncheng)
    near = await join(h, "o_near", city.grid1)
    # Wrote three days ago: the 48-hour window is closed, so no message may go to them now.
    quiet = await join(h, "o_quiet", city.grid2)
    outsider = await join(h, "o_out", city.other)
    h.clock.advance(hours=72)
    await near.say("最近怎么样")
    await worker.say("你好")
    done = await _create_in_chat(worker)
    assert "已发起意见征集" in done
    async with h.app[STORE].read() as tx:
        (poll,) = await polls.listing(tx)
    assert poll.grid_ids == (city.grid1.id, city.grid2.id)
    assert poll.options == ("接受", "不接受", "希望降低收费") and poll.created_via == "chat"
    assert poll.closes_at == h.clock.now() + timedelta(hours=3)
    await tick(h)
    await h.deliver_outbox()
    (menu,) = await menus_to(h, "o_near")
    assert "小区停车费" in menu["head_content"]
    assert [o["content"] for o in menu["list"]] == ["1. 接受", "2. 不接受", "3. 希望降低收费"]
    assert await menus_to(h, "o_quiet") == [] and await menus_to(h, "o_out") == []
    poll = await get_poll(h, poll.id)
    assert (poll.audience_size, poll.reached, poll.waiting) == (2, 1, 1)
    # The quiet resident hears of it on their next message — once.
    reply = await quiet.say("请问社区活动几点开始")
    assert "您有 1 个待参与的意见征集" in reply
    assert "待参与" not in await quiet.say("谢谢")
    assert "第 1 个" not in (listing := await quiet.say("投票")) and "1. 接受" in listing
    assert "已收到您的意见：2. 不接受" in await quiet.say("2")
    # Tapping an option votes for exactly that poll.
    tap = menu["list"][0]
    assert "已收到您的意见：1. 接受" in await near.tap(tap["id"], tap["content"])
    # The outsider may not vote, however they try.
    assert "不在范围内" in await outsider.say(f"投票 {poll.id} 1")
    assert "不在范围内" in await outsider.tap(tap["id"], tap["content"])
    t = await tally(h, poll.id)
    assert t.wechat == [1, 1, 0] and t.wechat_voters == 2
    listing = await worker.say("我的投票")
    assert "居民 2 人，已推送 1 人，待告知 1 人；微信已投 2 人" in listing


async def test_the_dialog_refuses_closing_times_out_of_bounds(harness):
    city = await build_city(harness)
    worker = await bound_worker(harness, "o_w", "小王", city.grid1)
    await worker.say("发起投票")
    await worker.say("停车费是否合理？")
    assert "2 到 10 项" in await worker.say("只有一个选项")
    await worker.say("合理、不合理")
    assert "没看懂" in await worker.say("随便吧")
    assert "2 到 2" in await worker.say("多选5")
    await worker.say("多选2 实名 结束后公布")
    assert "不在您负责" in await worker.say("白云社区")
    await worker.say("第一网格")
    assert "1 小时到 30 天" in await worker.say("30分钟")
    assert "1 小时到 30 天" in await worker.say("40天")
    assert "没看懂这个时间" in await worker.say("过几天吧")
    await worker.say("明天18:00")
    assert "提醒时间须早于截止时间" in await worker.say("提前3天")
    summary = await worker.say("提前2小时")
    assert "可多选，最多 2 项、实名、结束后公布结果" in summary
    assert "截止前 2 小时提醒" in summary


async def test_votes_changes_and_invalid_choices(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id])
    await tick(h)
    assert "没有这个选项：请回复 1 到 3" in await r.say("7")
    assert "只能选一项" in await r.say("1 2")
    assert "已收到您的意见：3. 希望降低" in await r.say("3")
    assert "无需重复提交" in await r.say("3")
    assert "改为：1. 接受" in await r.say("第一个")
    assert "改为：2. 不接受" in await r.say(f"投票 {poll_id} 不接受")
    assert (await tally(h, poll_id)).wechat == [0, 1, 0]


async def test_no_change_polls_keep_the_first_vote(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    await make_poll(h, [city.grid1.id], allow_change=False)
    await tick(h)
    await r.say("1")
    assert "不允许改票" in await r.say("2")


async def test_multiple_choice_by_typing_and_by_tapping(harness):
    h = harness
    city = await build_city(h)
    typist = await join(h, "o_typist", city.grid1)
    tapper = await join(h, "o_tapper", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id], options=("修路", "路灯", "绿化", "停车位"), max_choices=2)
    await tick(h)
    await h.deliver_outbox()
    assert "最多可选 2 项" in await typist.say("1 2 3")
    assert "已收到您的意见：1. 修路、3. 绿化" in await typist.say("1、3")
    (menu,) = await menus_to(h, "o_tapper")
    first, second, third = menu["list"][:3]
    assert "可继续点选" in await tapper.tap(first["id"], first["content"])
    assert "1. 修路、2. 路灯" in await tapper.tap(second["id"], second["content"])
    assert "最多可选 2 项" in await tapper.tap(third["id"], third["content"])
    assert (await tally(h, poll_id)).wechat == [2, 1, 1, 0]


async def test_a_named_poll_asks_the_name_once(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    first = await make_poll(h, [city.grid1.id], anonymous=False)
    await tick(h)
    assert "实名征集" in await r.say("2")
    assert "已收到您的意见：2. 不接受" in await r.say("3栋501 张三")
    second = await make_poll(h, [city.grid1.id], anonymous=False, question="是否同意增设充电桩？")
    await tick(h)
    assert "已收到您的意见：1. 接受" in await r.say(f"投票 {second} 1")
    t = await tally(h, first)
    assert t.named == [("3栋501 张三", [2], "wechat")]


async def test_anonymous_ballots_hold_no_openid_and_the_database_allows_one_per_resident(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_secret", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id])
    await tick(h)
    await r.say("1")
    async with h.app[STORE].read() as tx:
        rows = await tx.all("SELECT voter_key, openid FROM poll_ballots WHERE poll_id = :p", p=poll_id)
    assert len(rows) == 1 and rows[0]["openid"] is None and "o_secret" not in rows[0]["voter_key"]
    try:
        async with h.app[STORE].write() as tx:
            await tx.run(
                "INSERT INTO poll_ballots (poll_id, voter_key, source, choices, created_at, updated_at) "
                "VALUES (:p, :k, 'wechat', '[2]', :now, :now)",
                p=poll_id,
                k=rows[0]["voter_key"],
                now=tx.ts(h.clock.now()),
            )
    except Conflict:
        pass
    else:
        raise AssertionError("a second ballot of the same resident was stored")


async def test_door_to_door_votes_are_counted_separately(harness):
    h = harness
    city = await build_city(h)
    worker = await bound_worker(h, "o_w", "小王", city.yuncheng)
    r = await join(h, "o_r", city.grid1)
    async with h.app[STORE].read() as tx:
        worker_id = (await tx.one("SELECT id FROM grid_workers WHERE name = '小王'"))["id"]
    poll_id = await make_poll(h, [city.grid1.id], worker_id=worker_id)
    await tick(h)
    await r.say("1")
    assert "3栋501 选择 2. 不接受" in await worker.say(f"录入 {poll_id} 3栋501：2")
    assert "改为 3. 希望降低" in await worker.say(f"录入 {poll_id} 3栋501：3")
    await worker.say(f"录入 {poll_id} 5栋102 张大爷：2")
    results = await worker.say(f"结果 {poll_id}")
    assert "微信参与 1 人，入户收集 2 户" in results
    t = await tally(h, poll_id)
    assert (t.wechat, t.door) == ([1, 0, 0], [0, 1, 1])
    # Another worker's poll in a grid this worker does not look after is not theirs to record.
    other = await make_poll(h, [city.other.id])
    assert "不在您负责" in await worker.say(f"录入 {other} 1栋101：1")


async def test_results_only_after_closing_when_the_poll_says_so(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id], live_results=False, hours=2)
    await tick(h)
    reply = await r.say("1")
    assert "结束" in reply and "后公布" in reply
    assert "后公布" in await r.say(f"结果 {poll_id}")
    h.clock.advance(hours=2, minutes=1)
    await tick(h)
    results = await r.say(f"结果 {poll_id}")
    assert "已结束" in results and "1. 接受：1 票（100%）" in results
    assert "已经结束" in await r.say(f"投票 {poll_id} 2")
    assert "已经结束" in await r.say("2")  # a bare number for the poll just closed: told, not misunderstood


async def test_the_reminder_goes_to_those_who_have_not_voted(harness):
    h = harness
    city = await build_city(h)
    voter = await join(h, "o_voter", city.grid1)
    await join(h, "o_late", city.grid1)
    await make_poll(h, [city.grid1.id], hours=5, remind_before_minutes=120)
    await tick(h)
    await voter.say("1")
    await h.deliver_outbox()
    h.clock.advance(hours=3, minutes=1)
    await tick(h)
    await h.deliver_outbox()
    assert len(await menus_to(h, "o_voter")) == 1  # the poll itself, no reminder
    late = await menus_to(h, "o_late")
    assert len(late) == 2 and "提醒" in late[1]["head_content"]


async def test_closing_early_by_the_creator_only(harness):
    h = harness
    city = await build_city(h)
    creator = await bound_worker(h, "o_creator", "小王", city.yuncheng)
    other = await bound_worker(h, "o_other", "小李", city.grid1)
    await _create_in_chat(creator)
    async with h.app[STORE].read() as tx:
        (poll,) = await polls.listing(tx)
    assert "不是您发起的" in await other.say(f"结束投票 {poll.id}")
    assert "已结束" in await creator.say(f"结束投票 {poll.id}")
    assert "已经结束" in await creator.say(f"结束投票 {poll.id}")
    assert (await get_poll(h, poll.id)).closed_by == "小王"


async def test_closing_happens_once_at_the_deadline_across_a_restart(db_url, clock):
    async with start_harness(db_url, clock) as h:
        city = await build_city(h)
        worker = await bound_worker(h, "o_worker", "小王", city.yuncheng)
        voter = await join(h, "o_voter", city.grid1)
        await _create_in_chat(worker, settings="通知结果", closing="2小时")
        await tick(h)
        await voter.say("2")
    async with start_harness(db_url, clock, fresh=False) as h:
        # The fake WeChat restarted too and forgot who wrote when: they write again, as people do.
        await h.resident("o_worker").say("你好")
        await h.resident("o_voter").say("谢谢")
        clock.advance(hours=2, minutes=1)
        await tick(h)
        await tick(h)
        await h.deliver_outbox()
        async with h.app[STORE].read() as tx:
            (poll,) = await polls.listing(tx)
        assert poll.status == "closed" and poll.closed_by == "system"
        to_worker = [t for t in await h.pushed("o_worker") if t and "已结束" in t]
        to_voter = [t for t in await h.pushed("o_voter") if t and "感谢您参与" in t]
        assert len(to_worker) == 1 and "2. 不接受：1 票（100%）" in to_worker[0]
        assert len(to_voter) == 1


async def test_a_half_made_poll_survives_a_restart_and_cancelling_says_so(db_url, clock):
    async with start_harness(db_url, clock) as h:
        city = await build_city(h)
        worker = await bound_worker(h, "o_w", "小王", city.grid1)
        await worker.say("发起投票")
        await worker.say("是否同意在小区东门增设快递柜？")
    async with start_harness(db_url, clock, fresh=False) as h:
        worker = h.resident("o_w")
        assert "第 3 步" in await worker.say("同意/不同意")
        assert "没有发起" in await worker.say("取消")
        async with h.app[STORE].read() as tx:
            assert await polls.listing(tx) == []


def test_closing_times_in_the_words_people_use():
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bot.dialogs.poll_fields import parse_when

    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Guiyang
    local = lambda moment: moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    assert local(parse_when("3小时", now, tz)) == "2026-12-01 13:00"
    assert local(parse_when("2天", now, tz)) == "2026-12-03 10:00"
    assert local(parse_when("今晚8点", now, tz)) == "2026-12-01 20:00"
    assert local(parse_when("明天18:00", now, tz)) == "2026-12-02 18:00"
    assert local(parse_when("12月3日下午3点", now, tz)) == "2026-12-03 15:00"
    assert local(parse_when("1月5日18点", now, tz)) == "2027-01-05 18:00"
    assert parse_when("过几天", now, tz) is None and parse_when("2月30日8点", now, tz) is None
    leap_day = datetime(2028, 3, 1, 2, 0, tzinfo=UTC)  # 2月29日 has passed, and 2029 has none
    assert parse_when("2月29日8点", leap_day, tz) is None


async def test_frontdoor_chat_shows_a_pushed_poll_and_taps_its_options(harness, capsys):
    from bot import chat

    h = harness
    city = await build_city(h)
    r = h.resident("o_chat")
    assert "第一网格" in await chat._send(r, f"/scan-new {areas.scene_of(city.grid1)}")
    await r.say("你好")
    poll_id = await make_poll(h, [city.grid1.id])
    await tick(h)
    (menu,) = await menus_to(h, "o_chat")
    shown = chat._menu_text(menu)
    assert "[/tap 2] 2. 不接受" in shown and "小区停车费" in shown
    assert "已收到您的意见：2. 不接受" in await chat._send(r, "/tap 2")
    assert await chat._send(r, "/tap 9") is None and "/tap 1–3" in capsys.readouterr().out
    assert (await tally(h, poll_id)).wechat == [0, 1, 0]


async def test_a_distribution_cut_off_mid_way_is_finished_by_another_worker_once(db_url, clock, monkeypatch):
    from bot.services import poll_jobs

    async with start_harness(db_url, clock, FRONTDOOR_POLLS_CHUNK_SIZE="2") as h:
        city = await build_city(h)
        for i in range(5):
            await join(h, f"o_{i}", city.grid1)
        poll_id = await make_poll(h, [city.grid1.id])
        real = polls.distribute_some
        calls = 0

        async def dies_on_the_second_chunk(*args, **kw):
            nonlocal calls
            calls += 1
            if calls == 2:
                raise ConnectionError("the process died")
            return await real(*args, **kw)

        monkeypatch.setattr(polls, "distribute_some", dies_on_the_second_chunk)
        first = poll_jobs.PollWorker(h.app[STORE], clock, h.settings, h.app[POLLS].texts, owner="first")
        try:
            await first.tick()
        except ConnectionError:
            pass
        monkeypatch.setattr(polls, "distribute_some", real)
        second = poll_jobs.PollWorker(h.app[STORE], clock, h.settings, h.app[POLLS].texts, owner="second")
        assert await second.tick() == 0  # the first worker's lease still stands
        clock.advance(seconds=h.settings.polls.lease_seconds + 1)
        assert await second.tick() == 1
        async with h.app[STORE].read() as tx:
            recipients = await tx.all("SELECT openid FROM poll_recipients WHERE poll_id = :p", p=poll_id)
            menus = await tx.val("SELECT count(*) FROM outbox WHERE kind = 'menu'")
        assert sorted(r["openid"] for r in recipients) == [f"o_{i}" for i in range(5)]
        assert menus == 5
        assert (await get_poll(h, poll_id)).audience_size == 5


async def test_tapping_a_named_poll_asks_the_name_once_and_a_second_tap_is_not_lost(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id], anonymous=False)
    await tick(h)
    (menu,) = await menus_to(h, "o_r")
    first, second = menu["list"][:2]
    reply = await r.tap(first["id"], first["content"])
    assert reply.count("实名征集") == 1 and "还没有填写完" not in reply  # the question, once
    reply = await r.tap(second["id"], second["content"])  # they change their mind before giving the name
    assert "草稿" not in reply and reply.count("实名征集") == 1
    assert "已收到您的意见：2. 不接受" in await r.say("3栋501 张三")
    assert (await tally(h, poll_id)).named == [("3栋501 张三", [2], "wechat")]


async def test_tapping_a_named_poll_mid_complaint_keeps_the_complaint(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id], anonymous=False)
    await tick(h)
    (menu,) = await menus_to(h, "o_r")
    await r.say("投诉")
    await r.say("1")  # the category: the complaint has an answer now
    tap = menu["list"][1]
    reply = await r.tap(tap["id"], tap["content"])
    assert "草稿" not in reply  # not offered the complaint back as if it had been left
    assert f"投票 {poll_id}" in reply and "投诉" in reply  # how to vote later, and where they are
    async with h.app[STORE].read() as tx:
        state = await tx.one("SELECT dialog, mode FROM dialog_states WHERE openid = 'o_r'")
    assert (state["dialog"], state["mode"]) == ("complaint", "step")
    assert (await tally(h, poll_id)).wechat == [0, 0, 0]


async def test_a_story_that_begins_with_a_poll_word_is_a_complaint_not_a_command(harness):
    h = harness
    await build_city(h)
    r = harness.resident("o_story")
    for story in (
        "结果物业说这事不归他们管，让我找社区，社区又推给物业",
        "投票站设在哪里了，离我家太远了，能不能设近一点",
        "绑定手机号码之后能不能收到短信通知，我一直收不到",
    ):
        reply = await r.say(story)
        assert "编号" not in reply and "邀请码" not in reply, reply
        assert "已记下您说的情况" in reply, reply
        await r.say("取消")
    # The commands themselves still work, and say how to use them when the number is missing.
    assert "结果 1" in await r.say("结果")
    assert "投票 12" in await r.say("投票 不接受")
    assert "邀请码" in await r.say("绑定 ABC")


async def test_a_bare_number_after_a_reminder_answers_the_poll_reminded_of(harness):
    h = harness
    city = await build_city(h)
    r = await join(h, "o_r", city.grid1)
    parking = await make_poll(h, [city.grid1.id], hours=5, remind_before_minutes=120)
    await tick(h)
    h.clock.advance(minutes=30)
    charging = await make_poll(
        h, [city.grid1.id], hours=48, question="是否同意增设充电桩？", options=("同意", "不同意")
    )
    await tick(h)
    await r.say("你好")
    h.clock.advance(hours=2, minutes=40)  # the parking poll's reminder: now the last one in front of them
    await tick(h)
    await h.deliver_outbox()
    assert "提醒" in (await menus_to(h, "o_r"))[-1]["head_content"]
    assert "已收到您的意见：2. 不接受" in await r.say("2")
    assert (await tally(h, parking)).wechat == [0, 1, 0]
    assert (await tally(h, charging)).wechat == [0, 0]


async def test_a_resident_who_joins_after_distribution_votes_and_counts_in_the_audience(harness):
    h = harness
    city = await build_city(h)
    await join(h, "o_first", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id])
    await tick(h)
    late = await join(h, "o_late", city.grid1)
    assert "小区停车费" in await late.say("投票")
    assert "已收到您的意见" in await late.say("1")
    await h.resident("o_first").say("2")
    poll = await get_poll(h, poll_id)
    assert poll.audience_size == 2 and (await tally(h, poll_id)).wechat_voters == 2
    assert "参与率 100%" in await late.say(f"结果 {poll_id}")
