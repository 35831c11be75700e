"""Exactly once, in order per resident, within WeChat's deadline — and nothing lost across a restart."""

import asyncio
import random
from urllib.parse import urlencode

from sqlalchemy import func, select

from bot import app as app_module
from bot.intake import Intake
from bot.texts import Texts
from bot.wechat import simulator
from bot.wechat.inbound import Inbound
from storage.models import Case, DialogState, InboundMessage, OutboxMessage
from tests.conftest import start_harness
from tests.test_complaint_dialog import STORY, to_summary


def slow_down(h, seconds: float) -> None:
    """Make the bot take `seconds` to think, like a slow database would."""
    intake = h.app[app_module.INTAKE]
    original = intake.handler

    async def slow(ctx, msg):
        await asyncio.sleep(seconds)
        return await original(ctx, msg)

    intake.handler = slow


async def count(h, model) -> int:
    async with h.db.read() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def post_signed(h, signed):
    async with h.http.post(f"{h.webhook}?{urlencode(signed.query)}", data=signed.body.encode()) as resp:
        return h.wechat.open_reply(signed, resp.status, await resp.text())


async def test_a_retry_while_the_first_attempt_runs_gets_the_same_answer_and_runs_once(harness):
    r = harness.resident("o_retry")
    await to_summary(r, place="云城街道")
    slow_down(harness, 0.5)
    signed = harness.wechat.sign(simulator.text_xml("o_retry", "提交"))
    first, retry = await asyncio.gather(post_signed(harness, signed), post_signed(harness, signed))
    assert first == retry and "案件编号" in first
    later = await post_signed(harness, signed)  # a third delivery, after the fact
    assert later == first
    assert await count(harness, Case) == 1


async def test_too_slow_answers_success_then_pushes_the_reply_once(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_WEBHOOK_REPLY_BUDGET_SECONDS="0.2") as h:
        await _too_slow(h)


async def _too_slow(harness):
    slow_down(harness, 0.6)
    harness.fake.record_inbound("o_slow", "message")  # what WeChat notes when it delivers a message
    signed = harness.wechat.sign(simulator.text_xml("o_slow", "帮助"))
    assert await post_signed(harness, signed) is None  # `success`: WeChat will not retry
    await asyncio.sleep(0.6)
    assert await post_signed(harness, signed) is None  # WeChat's retry: nothing done twice
    assert await harness.deliver_outbox() == 1
    assert await harness.deliver_outbox() == 0
    pushed = await harness.pushed("o_slow")
    assert len(pushed) == 1 and "我的案件" in pushed[0]
    async with harness.db.read() as s:
        row = await s.scalar(select(InboundMessage))
    assert row.status == "deferred"
    assert await count(harness, OutboxMessage) == 1


async def test_one_residents_messages_run_in_order_others_in_parallel(store, clock, settings):
    seen: list[tuple[str, str]] = []
    running: set[str] = set()
    overlap = False

    async def handler(ctx, msg):
        nonlocal overlap
        assert ctx.openid not in running, "two messages of one resident ran at once"
        running.add(ctx.openid)
        overlap = overlap or len(running) > 1
        await asyncio.sleep(random.uniform(0, 0.02))
        seen.append((ctx.openid, msg.text))
        running.discard(ctx.openid)
        return msg.text

    intake = Intake(store, handler, clock=clock, settings=settings, texts=Texts())
    msgs = [
        Inbound(openid=f"o_{p}", kind="text", created=1, msg_id=p * 100 + i, text=str(i))
        for i in range(8)
        for p in range(3)
    ]
    replies = await asyncio.gather(*(intake.process(m, 5) for m in msgs))
    assert replies == [m.text for m in msgs]
    for p in range(3):
        assert [t for o, t in seen if o == f"o_{p}"] == [str(i) for i in range(8)]
    # SQLite gives writers turns, so residents interleave rather than overlap; PostgreSQL runs them together.
    assert overlap or store.is_sqlite


async def test_one_residents_messages_take_turns_across_two_instances(store, db_url, clock, settings):
    """Behind a load balancer one resident's messages land on both instances: they must still run one at a
    time (on PostgreSQL a per-resident advisory lock; SQLite's single writer does it by itself), while
    different residents run in parallel."""
    from storage.fast import open_store

    other = open_store(db_url)
    running: set[str] = set()
    overlaps: list[str] = []
    both = False

    async def handler(ctx, msg):
        nonlocal both
        if ctx.openid in running:
            overlaps.append(ctx.openid)
        running.add(ctx.openid)
        both = both or len(running) > 1
        await asyncio.sleep(random.uniform(0.005, 0.02))
        running.discard(ctx.openid)
        return msg.text

    a = Intake(store, handler, clock=clock, settings=settings, texts=Texts())
    b = Intake(other, handler, clock=clock, settings=settings, texts=Texts())
    try:
        msgs = [
            Inbound(openid=f"o_{p}", kind="text", created=1, msg_id=p * 100 + i, text=str(i))
            for i in range(8)
            for p in range(3)
        ]
        replies = await asyncio.gather(*((a if n % 2 else b).process(m, 5) for n, m in enumerate(msgs)))
    finally:
        await other.close()
    assert replies == [m.text for m in msgs]
    assert overlaps == []
    assert both or store.is_sqlite


async def test_concurrent_submissions_get_distinct_sequential_numbers(harness):
    residents = [harness.resident(f"o_c{i}") for i in range(12)]

    await asyncio.gather(*(to_summary(r, category="2", place="某某社区") for r in residents))
    replies = await asyncio.gather(*(r.say("提交") for r in residents))
    numbers = sorted(reply.split("案件编号：")[1].split("。")[0] for reply in replies)
    assert numbers == [f"XF20261125-{i:04d}" for i in range(1, 13)]
    assert await count(harness, Case) == 12


async def test_a_restart_mid_dialog_resumes_exactly_where_the_resident_was(db_url, clock):
    async with start_harness(db_url, clock) as h:
        r = h.resident("o_restart")
        for text in ("投诉", "3"):
            await r.say(text)
        assert "第 3 步" in await r.say("乌当区某某村")
    async with start_harness(db_url, clock, fresh=False) as h:  # a new process on the same database
        r = h.resident("o_restart")
        await r.say(STORY)
        summary = await r.say("跳过")
        assert "1. 问题类别：土地与征收" in summary and "2. 地点：乌当区某某村" in summary
        assert "案件编号" in await r.say("提交")


async def test_events_messages_and_abandoned_drafts_are_forgotten_after_their_retention(harness):
    h, webhook = harness, harness.settings.webhook
    r = h.resident("o_old")
    await r.event("click", "HELP")  # an event: kept only while WeChat might retry it
    await r.say("帮助")
    abandoned = h.resident("o_abandoned")
    await abandoned.say("投诉")
    await abandoned.say("1")
    h.clock.advance(hours=webhook.dedupe_retention_hours + 1)
    await r.say("我的案件")
    assert await h.app[app_module.INTAKE].purge() == 1  # the old click; messages stay as the conversation
    assert await count(h, InboundMessage) == 4
    h.clock.advance(days=h.settings.dialog.draft_retention_days)
    assert await h.app[app_module.INTAKE].purge() == 1  # the abandoned draft
    assert await count(h, DialogState) == 0 and await count(h, InboundMessage) == 4
    h.clock.advance(days=webhook.conversation_retention_days)
    assert await h.app[app_module.INTAKE].purge() == 4  # the messages, past the conversation's retention
    assert await count(h, InboundMessage) == 0


async def test_a_deferred_answer_is_not_overtaken_by_the_next_one(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_WEBHOOK_REPLY_BUDGET_SECONDS="0.2") as h:
        r = h.resident("o_order")
        await r.say("投诉")
        intake = h.app[app_module.INTAKE]
        fast = intake.handler
        slow_down(h, 0.5)
        assert await r.say("1") is None  # too slow: `success`, the answer goes to the outbox
        await asyncio.sleep(0.5)
        intake.handler = fast
        assert await r.say("云城街道") is None  # quick, but must queue behind the deferred answer
        assert await h.deliver_outbox() == 2
        pushed = await h.pushed("o_order")
        assert "第 2 步" in pushed[0] and "第 3 步" in pushed[1]
        assert "第 4 步" in await r.say(STORY)  # the queue is empty again: passive replies resume


async def test_a_deferred_message_that_fails_tells_the_resident_to_send_it_again(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_WEBHOOK_REPLY_BUDGET_SECONDS="0.2") as h:
        intake = h.app[app_module.INTAKE]

        async def broken(ctx, msg):
            await asyncio.sleep(0.4)
            raise RuntimeError("database went away")

        intake.handler = broken
        r = h.resident("o_broken")
        assert await r.say("投诉") is None
        await asyncio.sleep(0.5)
        assert await h.deliver_outbox() == 1
        assert "没有处理成功" in (await h.pushed("o_broken"))[0]
        assert await count(h, InboundMessage) == 0  # nothing stored: sending it again works


async def test_the_same_delivery_to_two_instances_is_processed_once(db_url, clock):
    """WeChat's retry may reach another instance while the first still works on it (two processes, one
    database): the unique dedupe key lets one commit and the other answer as it did."""
    async with start_harness(db_url, clock) as a, start_harness(db_url, clock, fresh=False) as b:
        r = a.resident("o_two")
        await to_summary(r, place="云城街道")
        slow_down(a, 0.3)
        slow_down(b, 0.3)
        signed = a.wechat.sign(simulator.text_xml("o_two", "提交"))
        first, second = await asyncio.gather(post_signed(a, signed), post_signed(b, signed))
        assert first == second and "案件编号" in first
        assert await count(a, Case) == 1
