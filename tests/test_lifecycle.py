"""Cases move only along the lawful graph; every move is on the ledger and the resident hears of it."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.app import STORE
from bot.cli import main
from bot.services import lifecycle
from bot.services.lifecycle import MoveRefused, Request
from bot.texts import Texts
from storage.models import Case, OutboxMessage
from tests.test_complaint_dialog import file_complaint


async def filed(h, openid: str = "o_life") -> str:
    reply = await file_complaint(h.resident(openid))
    return reply.split("案件编号：")[1].split("。")[0]


async def do(h, action: str, number: str, **kw) -> lifecycle.Moved:
    """One move, as the console or the CLI makes it: in its own transaction."""
    async with h.app[STORE].write() as tx:
        return await lifecycle.move(
            tx,
            Request(action=action, number=number, by=kw.pop("by", "张科员"), **kw),
            clock=h.clock,
            settings=h.settings,
            texts=Texts(),
        )


async def case_of(h, number: str) -> Case:
    async with h.db.read() as s:
        return await s.scalar(select(Case).where(Case.number == number).options(selectinload(Case.events)))


async def pushed_after_delivery(h, openid: str) -> list[str]:
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    return await h.pushed(openid)


async def test_the_whole_closed_loop_is_ledgered_and_told(harness):
    h = harness
    number = await filed(h)
    await do(h, "accept", number)
    await do(h, "assign", number, unit="云城街道办事处", co_units=["白云区公安分局", "云城街道办事处"])
    await do(h, "start", number, by="街道王主任")
    await do(h, "reply", number, text="已约谈物业，停车费调整为每月100元。", by="街道王主任")
    await do(h, "close", number)
    case = await case_of(h, number)
    assert case.status == "closed" and case.lead_unit == "云城街道办事处" and case.co_units == ["白云区公安分局"]
    assert case.handle_due_at == case.accepted_at + timedelta(days=60)
    assert [(e.action, e.from_status, e.to_status, e.actor) for e in case.events] == [
        ("submitted", None, "pending", "resident"),
        ("accepted", "pending", "accepted", "张科员"),
        ("assigned", "accepted", "assigned", "张科员"),
        ("started", "assigned", "in_progress", "街道王主任"),
        ("replied", "in_progress", "replied", "街道王主任"),
        ("closed", "replied", "closed", "张科员"),
    ]
    pushed = await pushed_after_delivery(h, "o_life")
    assert len(pushed) == 4  # accepted, assigned, replied, closed: starting work is internal
    assert f"案件 {number}）已受理" in pushed[0] and "年" in pushed[0]
    assert "云城街道办事处" in pushed[1]
    assert "停车费调整为每月100元" in pushed[2]
    assert "1 满意" in pushed[3]


async def test_moves_outside_the_graph_are_refused_clearly(harness):
    number = await filed(harness)
    with pytest.raises(MoveRefused, match="现在是“待受理”，不能答复"):
        await do(harness, "reply", number, text="x")
    with pytest.raises(MoveRefused, match="不予受理需要填写原因"):
        await do(harness, "refuse", number)
    with pytest.raises(MoveRefused, match="没有找到案件"):
        await do(harness, "accept", "XF19990101-0001")
    await do(harness, "accept", number)
    with pytest.raises(MoveRefused, match="交办需要指定承办单位"):
        await do(harness, "assign", number)
    assert [e.action for e in (await case_of(harness, number)).events] == ["submitted", "accepted"]


async def test_refusal_tells_the_reason(harness):
    number = await filed(harness, "o_refused")
    await do(harness, "refuse", number, reason="属于诉讼程序处理的事项")
    assert "不予受理，原因：属于诉讼程序处理的事项" in (await pushed_after_delivery(harness, "o_refused"))[0]


async def test_a_unit_returns_a_misrouted_case_only_within_the_window(harness):
    number = await filed(harness)
    await do(harness, "accept", number)
    await do(harness, "assign", number, unit="交通局")
    harness.clock.advance(hours=2)
    await do(harness, "return", number, reason="不属于本单位职责", by="交通局")
    case = await case_of(harness, number)
    assert (case.status, case.lead_unit) == ("accepted", None)
    await do(harness, "assign", number, unit="住建局")
    harness.clock.advance(hours=25)
    with pytest.raises(MoveRefused, match="超过 24 小时"):
        await do(harness, "return", number, reason="也不归我们", by="住建局")


async def test_reopen_after_close_and_merge_keeps_both_ledgers(harness):
    first = await filed(harness, "o_first")
    second = await filed(harness, "o_second")
    await do(harness, "accept", first)
    await do(harness, "assign", first, unit="综治中心")
    await do(harness, "start", first)
    await do(harness, "reply", first, text="已处理")
    await do(harness, "close", first)
    harness.clock.advance(days=90)  # long after the first handling deadline
    await do(harness, "reopen", first, reason="群众不满意", by="督办科")
    reopened = await case_of(harness, first)
    assert reopened.status == "reopened" and reopened.deadline_state == "ok"
    assert reopened.handle_due_at == harness.clock.now() + timedelta(days=60)  # a fresh handling period
    await do(harness, "merge", second, into=first)
    merged, kept = await case_of(harness, second), await case_of(harness, first)
    assert (merged.status, merged.merged_into) == ("merged", first)
    assert merged.events[-1].action == "merged" and kept.events[-1].action == "merged_in"
    assert kept.events[-1].note == second
    await harness.resident("o_second").say("帮助")  # writing again, months later, reopens their window
    [told] = [p for p in await pushed_after_delivery(harness, "o_second") if "合并办理" in p]
    # …without sending them to look up someone else's case, which 查询 would not show them
    assert f"（案件 {first}）合并办理" in told and "查询" not in told
    with pytest.raises(MoveRefused, match="不能并入"):
        await do(harness, "merge", first, into=second)  # a merged case takes nothing in


async def test_two_people_moving_one_case_at_once_cannot_both_win(harness):
    number = await filed(harness)
    results = await asyncio.gather(
        do(harness, "accept", number), do(harness, "refuse", number, reason="重复"), return_exceptions=True
    )
    assert sum(isinstance(r, lifecycle.Moved) for r in results) == 1
    assert sum(isinstance(r, MoveRefused) for r in results) == 1
    assert len((await case_of(harness, number)).events) == 2


async def test_the_cli_moves_cases_for_scripts(harness, capsys, monkeypatch):
    number = await filed(harness)
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", harness.settings.database.url)
    assert await asyncio.to_thread(main, ["cases", "accept", number, "--by", "李科长"]) == 0
    assert f"案件 {number}：待受理 → 已受理" in capsys.readouterr().out
    assert (
        await asyncio.to_thread(
            main, ["cases", "assign", number, "--by", "李科长", "--unit", "城管局", "--co", "环保局"]
        )
        == 0
    )
    assert await asyncio.to_thread(main, ["cases", "close", number, "--by", "李科长"]) == 1
    assert "现在是“已交办”，不能办结" in capsys.readouterr().err
    case = await case_of(harness, number)
    assert (case.status, case.lead_unit, case.co_units, case.events[-1].actor) == (
        "assigned",
        "城管局",
        ["环保局"],
        "李科长",
    )


async def test_a_resident_withdraws_their_own_open_case_by_chat(harness):
    number = await filed(harness, "o_withdraws")
    other = harness.resident("o_stranger")
    assert "没有找到案件" in await other.say(f"撤回 {number}")  # not theirs
    r = harness.resident("o_withdraws")
    assert f"您已撤回案件 {number}" in await r.say(f"撤回 {number}")
    case = await case_of(harness, number)
    assert (case.status, case.events[-1].actor) == ("withdrawn", "resident")
    assert "现在是“已撤回”，不能撤回" in await r.say(f"撤回 {number}")
    assert "撤回 XF" in await r.say("撤回")


async def _closed(h, openid: str) -> str:
    number = await filed(h, openid)
    for action, kw in (
        ("accept", {}),
        ("assign", {"unit": "物业办"}),
        ("start", {}),
        ("reply", {"text": "已处理"}),
        ("close", {}),
    ):
        await do(h, action, number, **kw)
    await pushed_after_delivery(h, openid)  # the notices reach the phone before the resident answers them
    return number


async def test_the_resident_rates_a_closed_case_through_the_dialog(harness):
    number = await _closed(harness, "o_rates")
    r = harness.resident("o_rates")
    assert "还有什么想对我们说的吗" in await r.say("2")  # the number the closing notice asked for
    assert f"感谢您的评价！案件 {number}" in await r.say("工作人员态度很好")
    case = await case_of(harness, number)
    assert (case.rating, case.rating_comment, case.status) == (2, "工作人员态度很好", "closed")
    assert case.events[-1].action == "rated" and case.events[-1].note == "基本满意：工作人员态度很好"
    assert "没能理解" in await r.say("1")  # rated once: a later "1" is nothing to rate


async def test_unsatisfied_reopens_the_case(harness):
    number = await _closed(harness, "o_unhappy")
    r = harness.resident("o_unhappy")
    await r.say("不满意")
    assert "发回重新办理" in await r.say("跳过")
    case = await case_of(harness, number)
    assert (case.status, case.rating) == ("reopened", 3)
    assert [e.action for e in case.events][-2:] == ["rated", "reopened"]


async def test_an_extension_keeps_the_status_is_ledgered_and_told(harness, capsys, monkeypatch):
    number = await filed(harness, "o_extend")
    await do(harness, "accept", number)
    await do(harness, "assign", number, unit="国土局")
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", harness.settings.database.url)
    argv = ["cases", "extend", number, "--by", "督办科", "--reason", "需测绘单位现场勘界", "--days", "15"]
    assert await asyncio.to_thread(main, argv) == 0
    assert f"案件 {number}：已交办 → 已交办" in capsys.readouterr().out
    case = await case_of(harness, number)
    assert case.status == "assigned" and case.handle_due_at == case.accepted_at + timedelta(days=75)
    assert (case.events[-1].action, case.events[-1].actor) == ("extended", "督办科")
    async with harness.db.read() as s:  # the CLI's notice is queued by its real clock: read the outbox row
        notices = [m.payload["content"] for m in await s.scalars(select(OutboxMessage))]
    assert "办理期限延长 15 日" in notices[-1] and "需测绘单位现场勘界" in notices[-1]
    assert await asyncio.to_thread(main, argv) == 1
    assert "已经延期过一次" in capsys.readouterr().err
