"""Unfollowing, or `frontdoor residents forget OPENID`: the person is detached from everything the office held
for their WeChat account — profile, drafts, pending pushes, 订阅通知, chat, their name on a ballot — while the
case records the law requires stay, with their ledger, and say on the ledger that they were detached."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from bot import residents_cli
from bot.app import STORE
from bot.cli import main
from bot.services import forget, gridworkers, polls
from bot.texts import Texts
from bot.wechat import simulator
from storage.models import Base
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.polls_setup import bound_worker, build_city, join, make_poll, tally, tick
from tests.test_complaint_dialog import STORY, file_complaint
from tests.test_lifecycle import case_of, do

ME = "o_forget_me"
NEIGHBOUR = "o_neighbour"
SUB = "SUB_PROGRESS"


async def columns_naming(h, openid: str) -> set[str]:
    """Every table.column holding `openid` anywhere in its value. The tables and columns come from the schema's
    metadata, so a column added later is checked as well."""
    found = set()
    async with h.db.read() as s:
        for table in Base.metadata.sorted_tables:
            for row in (await s.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is not None and openid in str(value):
                        found.add(f"{table.name}.{column}")
    return found


async def voted(h, poll_id: int) -> int:
    """The turnout the console shows: recipients who voted over WeChat."""
    async with h.app[STORE].read() as tx:
        return await tx.val(
            "SELECT count(*) FROM poll_recipients WHERE poll_id = :p AND voted_at IS NOT NULL", p=poll_id
        )


def counts(t: polls.Tally) -> tuple:
    return t.wechat, t.door, t.wechat_voters, t.door_voters


@dataclass
class Story:
    number: str
    named: int
    anonymous: int
    tallies: dict[int, tuple]
    turnout: dict[int, int]
    pushed: list


async def a_resident_with_everything(h) -> Story:
    """A resident of a grid who voted in a named and an anonymous poll, accepted a 订阅通知 template, filed a
    case that staff have just accepted (the notice not yet delivered), and is half-way through a second one."""
    city = await build_city(h)
    me = await join(h, ME, city.grid1)
    neighbour = await join(h, NEIGHBOUR, city.grid1)
    named = await make_poll(h, [city.grid1.id], anonymous=False, notify_voters=True, hours=2)
    anonymous = await make_poll(h, [city.grid1.id], question="是否同意增设充电桩？", hours=2)
    await tick(h)
    assert "实名征集" in await me.say(f"投票 {named} 2")
    assert "已收到您的意见：2. 不接受" in await me.say("3栋501 张三")
    assert "实名征集" in await neighbour.say(f"投票 {named} 1")
    assert "已收到您的意见" in await neighbour.say("3栋502 李四")
    assert "已收到您的意见" in await me.say(f"投票 {anonymous} 1")
    assert "已收到您的意见" in await neighbour.say(f"投票 {anonymous} 2")
    await me.subscribe({SUB: "accept"})
    number = (await file_complaint(me)).split("案件编号：")[1].split("。")[0]
    await h.deliver_outbox()
    h.clock.advance(minutes=30)  # what follows is recent enough to be retried by WeChat, the rest is not
    assert "第 1 步" in await me.say("投诉")
    assert "第 2 步" in await me.say("1")
    await do(h, "accept", number)  # its notice waits in the outbox
    found = await columns_naming(h, ME)
    assert {
        "residents.openid",
        "cases.openid",
        "dialog_states.openid",
        "outbox.openid",
        "subscriptions.openid",
        "poll_recipients.openid",
        "poll_ballots.openid",
        "inbound_messages.openid",
        "inbound_messages.dedupe_key",
    } <= found, found
    return Story(
        number,
        named,
        anonymous,
        {p: counts(await tally(h, p)) for p in (named, anonymous)},
        {p: await voted(h, p) for p in (named, anonymous)},
        await h.pushed(ME),
    )


async def detached_and_nothing_lost(h, story: Story, *, actor: str) -> None:
    """What must hold once the resident was detached, by the unfollow or by the CLI."""
    assert await columns_naming(h, ME) == set()
    case = await case_of(h, story.number)
    assert case.openid is None and case.status == "accepted"
    assert (case.description, case.contact_phone) == (STORY, "13812345678")  # the registration record stays
    assert [e.action for e in case.events] == ["submitted", "accepted", "detached"]
    last = case.events[-1]
    assert last.actor == actor and "依法保留" in last.note
    # The polls count exactly as before; the named ballot no longer has a name.
    for poll_id in (story.named, story.anonymous):
        assert counts(await tally(h, poll_id)) == story.tallies[poll_id]
        assert await voted(h, poll_id) == story.turnout[poll_id]
    assert [name for name, _choices, _source in (await tally(h, story.named)).named] == ["", "3栋502 李四"]
    # Nothing reaches them any more: not the notice that was waiting, not a later move, not the poll's result.
    await do(h, "assign", story.number, unit="云城街道办事处")
    h.clock.advance(hours=3)
    await tick(h)
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    assert await h.pushed(ME) == story.pushed
    assert any("结果" in (text or "") for text in await h.pushed(NEIGHBOUR))  # closing did tell the others
    # Staff still see the whole case, its ledger and why it is no longer linked.
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.get(f"/cases/{story.number}")
    assert status == 200
    assert STORY in page and "群众通过微信提交" in page and "解除微信关联" in page and "依法保留" in page


async def coming_back_is_a_new_resident(h, story: Story) -> None:
    me = h.resident(ME)
    welcome = await me.event("subscribe")
    assert "欢迎关注" in welcome and "还没有填写完" not in welcome
    reply = await me.say("我的案件")
    assert "您还没有提交过案件" in reply and story.number not in reply
    async with h.app[STORE].read() as tx:
        row = await tx.one("SELECT grid_id, display_name FROM residents WHERE openid = :o", o=ME)
    assert (row["grid_id"], row["display_name"]) == (None, None)


async def test_unfollowing_detaches_the_resident_and_keeps_the_case(harness):
    h = harness
    story = await a_resident_with_everything(h)
    assert await h.resident(ME).event("unsubscribe") is None
    await detached_and_nothing_lost(h, story, actor="system")
    await coming_back_is_a_new_resident(h, story)


async def test_forget_on_request_detaches_as_unfollowing_does(harness, monkeypatch, capsys):
    h = harness
    story = await a_resident_with_everything(h)
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    code = await asyncio.to_thread(
        residents_cli.forget_cli, h.settings, Texts(), ME, yes=True, by="李科员", clock=h.clock
    )
    out, _err = capsys.readouterr()
    assert code == 0
    assert ME not in out and "o_fo…" in out  # the openid is printed masked
    assert f"案件：1 件解除关联（{story.number}）" in out
    assert "未提交的草稿：1 份删除" in out
    assert "投票：2 张改为匿名票" in out
    assert "订阅通知授权：1 项删除" in out
    pushes = next(line for line in out.splitlines() if "待发送的消息" in line)
    assert "：0 条" not in pushes
    await detached_and_nothing_lost(h, story, actor="李科员")
    await coming_back_is_a_new_resident(h, story)


async def test_the_command_refuses_an_unknown_openid_and_asks_before_it_acts(harness, monkeypatch, capsys):
    h = harness
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    assert await asyncio.to_thread(main, ["residents", "forget", "o_nobody_at_all", "--yes"]) == 1
    _out, err = capsys.readouterr()
    assert "没有找到微信用户 o_no…" in err and "未做改动" in err
    me = h.resident(ME)
    number = (await file_complaint(me)).split("案件编号：")[1].split("。")[0]
    # Without --yes it shows what it would do, and a "no" leaves everything as it was.
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert await asyncio.to_thread(main, ["residents", "forget", ME]) == 1
    out, err = capsys.readouterr()
    assert f"案件：1 件解除关联（{number}）" in out and "已取消" in err
    assert (await case_of(h, number)).openid == ME
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    assert await asyncio.to_thread(main, ["residents", "forget", ME]) == 0
    assert "已解除微信用户" in capsys.readouterr().out
    assert await columns_naming(h, ME) == set()
    case = await case_of(h, number)
    assert case.openid is None and case.events[-1].actor == "cli"
    # Once detached there is nothing left to detach.
    assert await asyncio.to_thread(main, ["residents", "forget", ME, "--yes"]) == 1


async def test_a_grid_worker_who_unfollows_is_unbound_and_the_worker_stays(harness):
    h = harness
    city = await build_city(h)
    worker = await bound_worker(h, "o_worker_gone", "小王", city.yuncheng)
    await worker.event("unsubscribe")
    assert await columns_naming(h, "o_worker_gone") == set()
    async with h.app[STORE].read() as tx:
        kept = await gridworkers.by_name(tx, "小王")
    assert kept is not None and kept.openid is None and kept.area_ids == (city.yuncheng.id,)


async def test_retries_after_the_unfollow_bring_nobody_back(harness):
    h = harness
    me = h.resident(ME)
    await me.say("你好")
    said = simulator.text_xml(ME, "请问怎么投诉", created=1_800_000_000, msg_id=424242)
    assert await h.wechat.post(h.http, h.webhook, said)
    left = simulator.event_xml(ME, "unsubscribe", created=1_800_000_001)
    assert await h.wechat.post(h.http, h.webhook, left) is None
    # WeChat retries both (it did not hear our answers in time): the message is recognised, the unfollow
    # finds nothing left to detach; neither brings back a row naming them.
    assert await h.wechat.post(h.http, h.webhook, said) is None
    assert await h.wechat.post(h.http, h.webhook, left) is None
    assert await columns_naming(h, ME) == set()


async def test_following_again_gives_no_second_vote(harness):
    """The kept ballot still answers for its voter (its key is a one-way hash of poll and openid, in named polls
    too): someone who unfollows, follows again and rejoins the grid does not count twice."""
    h = harness
    city = await build_city(h)
    me = await join(h, ME, city.grid1)
    named = await make_poll(h, [city.grid1.id], anonymous=False, hours=2)
    anonymous = await make_poll(h, [city.grid1.id], question="是否同意增设充电桩？", hours=2)
    await tick(h)
    assert "实名征集" in await me.say(f"投票 {named} 1")
    assert "已收到您的意见" in await me.say("3栋501 张三")
    assert "已收到您的意见" in await me.say(f"投票 {anonymous} 1")
    before = {p: counts(await tally(h, p)) for p in (named, anonymous)}
    assert await me.event("unsubscribe") is None
    me = await join(h, ME, city.grid1)  # back, by the grid's poster
    await me.say(f"投票 {anonymous} 1")
    reply = await me.say(f"投票 {named} 1")
    if "实名征集" in reply:  # asked for their name again: the ballot has none now
        await me.say("3栋501 张三")
    for poll_id in (named, anonymous):
        assert counts(await tally(h, poll_id)) == before[poll_id]


async def _open(store):
    """A write transaction left open, as another worker's would be mid-way; close with `.__aexit__`."""
    cm = store.write()
    return cm, await cm.__aenter__()


async def _chunk(h, tx, poll_id: int) -> None:
    poll = await polls.get(tx, poll_id)
    s = h.settings
    await polls.distribute_some(
        tx, poll, after=0, now=h.clock.now(), texts=Texts(), clock=h.clock, push=s.push, tz=s.tz, limit=500
    )


async def _forget(h, tx) -> None:
    await forget.forget_resident(tx, ME, h.clock.now(), reason="request", texts=Texts())


@pytest.mark.parametrize("first", ["poll", "forget"])
async def test_a_resident_detached_while_a_poll_reaches_them_is_left_nothing(pg_url, clock, first):
    """PostgreSQL, two workers at once: a poll's distribution chunk and a forget of one of its residents. Whichever
    commits first, nothing names the person afterwards and no poll menu goes to them; their neighbour gets it."""
    async with start_harness(pg_url, clock) as h:
        city = await build_city(h)
        await join(h, ME, city.grid1)
        await join(h, NEIGHBOUR, city.grid1)
        poll_id = await make_poll(h, [city.grid1.id])
        store = h.app[STORE]
        cm, tx = await _open(store)
        try:
            if first == "poll":
                await _chunk(h, tx, poll_id)
                other = asyncio.create_task(_in_own_tx(store, lambda t: _forget(h, t)))
            else:
                await _forget(h, tx)
                other = asyncio.create_task(_in_own_tx(store, lambda t: _chunk(h, t, poll_id)))
            await asyncio.sleep(0.5)
            assert not other.done()  # it waits for the first to commit
        finally:
            await cm.__aexit__(None, None, None)
        await other
        assert await columns_naming(h, ME) == set()
        h.clock.advance(seconds=5)
        await h.deliver_outbox()
        async with h.http.get(f"{h.fake_url}/sent") as resp:
            sent = await resp.json()
        assert [m["touser"] for m in sent if m.get("msgtype") == "msgmenu"] == [NEIGHBOUR]


async def _in_own_tx(store, work) -> None:
    async with store.write() as tx:
        await work(tx)
