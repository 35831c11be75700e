"""Outbox delivery against the fake WeChat over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from bot.notify import OutboxWorker
from bot.services.outbox import enqueue, enqueue_text
from bot.wechat.api import WeChatAPI
from bot.wechat.fake import FakeWeChat
from storage.fast import Store, open_store
from storage.models import OutboxMessage

SEND = "message/custom/send"


@pytest.fixture
def fake(settings, clock) -> FakeWeChat:
    return FakeWeChat.from_settings(settings, clock)


@pytest.fixture
async def api(fake, settings, clock):
    parent = web.Application()
    parent.add_subapp("/fake-wechat/", fake.app())
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        # No in-call retries: every transient failure shows up as an outbox retry.
        wechat = dataclasses.replace(settings.wechat, api_max_retries=0)
        yield WeChatAPI.from_settings(http, wechat, clock, base_url=str(server.make_url("/fake-wechat")))
    await server.close()


@pytest.fixture
def make_worker(store, api, clock, settings):
    def make(owner: str = "worker-1", fast: Store | None = None, **outbox) -> OutboxWorker:
        return OutboxWorker(fast or store, api, clock, dataclasses.replace(settings.outbox, **outbox), owner)

    return make


async def enqueue_texts(store, clock, openid: str, *texts: str) -> list[int]:
    async with store.write() as tx:
        return [await enqueue_text(tx, clock, openid, text) for text in texts]


async def outbox_rows(db) -> list[OutboxMessage]:
    async with db.read() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


async def test_message_is_delivered_once(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "您的诉求已受理，编号XF20261125001")
    worker = make_worker()
    assert await worker.tick() == 1
    assert await worker.tick() == 0
    assert contents(fake.sent) == ["您的诉求已受理，编号XF20261125001"]
    [row] = await outbox_rows(db)
    assert (row.status, row.sent_at, row.attempts, row.lease_owner) == ("sent", clock.now(), 1, None)


async def test_a_rolled_back_change_sends_nothing(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await enqueue_text(tx, clock, "o-1", "不该发出")
            raise RuntimeError("the service failed after enqueuing")
    assert await make_worker().tick() == 0
    assert fake.sent == []


async def test_a_held_back_row_waits_and_holds_later_ones(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    async with store.write() as tx:
        await enqueue_text(tx, clock, "o-1", "第二段", not_before=clock.now() + timedelta(seconds=2))
        await enqueue_text(tx, clock, "o-1", "第三段")
    worker = make_worker()
    assert await worker.tick() == 0
    clock.advance(seconds=2)
    assert await worker.tick() == 2
    assert contents(fake.sent) == ["第二段", "第三段"]


async def test_menu_rows_are_delivered_as_menus(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "event")
    async with store.write() as tx:
        await enqueue(
            tx,
            clock,
            "o-1",
            "menu",
            {"head": "请评价办理结果：", "options": [["r1", "满意"], ["r2", "不满意"]], "tail": ""},
        )
    assert await make_worker().tick() == 1
    [sent] = fake.sent
    assert sent["payload"]["msgmenu"]["list"] == [
        {"id": "r1", "content": "满意"},
        {"id": "r2", "content": "不满意"},
    ]


async def test_transient_failure_is_retried_with_backoff(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "进展通知")
    fake.add_fault(SEND, errcode=-1, times=2)
    worker = make_worker(backoff_base_seconds=5)

    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "pending",
        1,
        clock.now() + timedelta(seconds=5),
    )
    assert row.last_error.startswith("-1 ")

    clock.advance(seconds=4)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 1  # not due yet: not even attempted

    clock.advance(seconds=1)
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=10)  # doubled

    clock.advance(seconds=10)
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["进展通知"]


async def test_gives_up_after_max_attempts(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "进展通知")
    fake.add_fault(SEND, errcode=45011, times=10)
    worker = make_worker(max_attempts=3, backoff_base_seconds=1)
    for _ in range(5):
        await worker.tick()
        clock.advance(minutes=1)
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("failed", 3)
    assert "45011" in row.last_error
    assert fake.calls[SEND] == 3
    assert fake.sent == []


@pytest.mark.parametrize("errcode", [-1, 48001])
async def test_backoff_is_capped_at_an_hour(db, store, clock, fake, make_worker, errcode):
    fake.record_inbound("o-1", "message")
    [row_id] = await enqueue_texts(store, clock, "o-1", "进展通知")
    async with db.write() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(attempts=12))
    fake.add_fault(SEND, errcode=errcode)
    await make_worker(max_attempts=20, backoff_base_seconds=5).tick()
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("pending", 13)
    assert row.next_attempt_at == clock.now() + timedelta(hours=1)


async def test_daily_quota_is_retried_after_a_quarter_hour_then_delivered(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "您的诉求已受理，编号XF20261125001")
    fake.add_fault(SEND, errcode=45009, times=4)
    worker = make_worker(backoff_base_seconds=5, max_attempts=3)  # plain backoff alone: 5 s, then give up

    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("pending", 0)  # the account's quota, not this message: no attempt spent
    assert row.next_attempt_at == clock.now() + timedelta(minutes=15)
    assert row.last_error.startswith("45009 ")

    clock.advance(minutes=15, seconds=-1)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 1  # not due yet: not even attempted

    for _ in range(3):  # more failures than max_attempts: still kept, as the quota resets tomorrow
        clock.advance(hours=1)
        assert await worker.tick() == 0
    clock.advance(hours=1)
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["您的诉求已受理，编号XF20261125001"]
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)


async def test_an_unknown_errcode_is_retried_with_the_plain_backoff(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "进展通知")
    fake.add_fault(SEND, errcode=48001)  # api unauthorized: not known to be permanent
    worker = make_worker(backoff_base_seconds=5)
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, clock.now() + timedelta(seconds=5))
    assert row.last_error.startswith("48001 ")
    clock.advance(seconds=5)
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["进展通知"]


# A configuration error, how the fake is made to produce it, and how many message/custom/send calls one
# delivery attempt makes while it lasts.
CONFIG_FAULTS = {
    "ip-not-whitelisted": ("40164 ", SEND, {"errcode": 40164}, 1),
    "bad-appsecret": ("40125 ", "stable_token", {"errcode": 40125}, 0),
    "bad-appid": ("40013 ", "stable_token", {"errcode": 40013}, 0),
    "http-404-wrong-base-url": ("-2 ", SEND, {"http_status": 404}, 1),
    # Rejected, refreshed once, rejected again.
    "token-rejected-twice": ("40001 ", SEND, {"errcode": 40001}, 2),
}


@pytest.mark.parametrize("case", CONFIG_FAULTS.values(), ids=CONFIG_FAULTS.keys())
async def test_a_configuration_error_keeps_the_row_past_max_attempts(db, store, clock, fake, make_worker, caplog, case):
    prefix, path, fault, sends_per_try = case
    openid = "o-resident-0042"
    fake.record_inbound(openid, "message")
    await enqueue_texts(store, clock, openid, "您的诉求已受理，编号XF20261125001")
    # Configuration errors do not spend attempts; the wait doubles with the row's age, from 5 minutes
    # up to the hour's cap. Six tries, twice max_attempts.
    waits = [5, 5, 10, 20, 40, 60]
    fake.add_fault(path, times=len(waits) * max(sends_per_try, 1), **fault)
    worker = make_worker(max_attempts=3, backoff_base_seconds=1)
    caplog.set_level(logging.DEBUG)

    for i, wait in enumerate(waits):
        caplog.clear()
        assert await worker.tick() == 0
        [row] = await outbox_rows(db)
        assert (row.status, row.attempts) == ("pending", 0)
        assert row.last_error.startswith(prefix)
        assert row.next_attempt_at == clock.now() + timedelta(minutes=wait)
        assert fake.calls[SEND] == (i + 1) * sends_per_try
        [alert] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert alert.name == "bot.notify"
        assert "operator must fix the configuration" in alert.getMessage()
        assert prefix.strip() in alert.getMessage()
        assert openid not in caplog.text
        clock.advance(minutes=wait, seconds=-1)
        assert await worker.tick() == 0  # not due yet: not even attempted
        assert fake.calls[SEND] == (i + 1) * sends_per_try
        clock.advance(seconds=1)

    # The operator fixed it: the notice goes out, and it never counted against max_attempts.
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["您的诉求已受理，编号XF20261125001"]
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)


async def test_a_configuration_error_is_logged_once_per_tick_by_row_id(db, store, clock, fake, make_worker, caplog):
    openids = ["o-resident-0001", "o-resident-0002", "o-resident-0003"]
    ids = []
    for openid in openids:
        fake.record_inbound(openid, "message")
        ids += await enqueue_texts(store, clock, openid, f"{openid} 第一段", f"{openid} 第二段")
    fake.add_fault(SEND, errcode=40164, times=100)
    caplog.set_level(logging.DEBUG)
    assert await make_worker().tick() == 0
    assert fake.calls[SEND] == 3  # each resident's first row tried; their later rows wait behind it
    [alert] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = alert.getMessage()
    assert "40164" in message and "IP whitelist" in message
    assert "3 row(s)" in message
    for row_id in ids[::2]:
        assert str(row_id) in message
    for openid in openids:
        assert openid not in caplog.text
    assert {(row.status, row.attempts) for row in await outbox_rows(db)} == {("pending", 0)}


async def test_an_unsubscribed_resident_fails_at_once(db, store, clock, fake, make_worker, caplog):
    openid = "o-resident-0043"
    fake.record_inbound(openid, "message")
    fake.record_inbound(openid, "unsubscribe")
    [row_id] = await enqueue_texts(store, clock, openid, "您的诉求已办结")
    caplog.set_level(logging.DEBUG)
    worker = make_worker()
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("43004 ")
    assert f"outbox {row_id} " in caplog.text
    assert openid not in caplog.text
    clock.advance(hours=2)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 1


# 45015/45047 fall back to the template channel: tests/test_push_channels.py.
@pytest.mark.parametrize("errcode", [43004, 40003, 45002, 40008, 44004, 40037])
async def test_refusals_of_the_message_or_recipient_fail_at_once(db, store, clock, fake, make_worker, errcode):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "您的诉求已办结")
    fake.add_fault(SEND, errcode=errcode, times=10)
    worker = make_worker(backoff_base_seconds=1)
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == f"{errcode} injected fault"
    clock.advance(hours=2)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 1


async def test_a_malformed_payload_fails_at_once(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    async with store.write() as tx:
        await enqueue(tx, clock, "o-1", "menu", {"head": "请评价："})  # no options
    worker = make_worker(backoff_base_seconds=1)
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("bad payload")
    clock.advance(hours=2)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 0


async def test_closed_window_fails_at_once(db, store, clock, fake, make_worker):
    # The resident never wrote: WeChat refuses (45015), no template is configured, and retrying cannot help.
    await enqueue_texts(store, clock, "o-silent", "您的诉求已办结")
    worker = make_worker()
    assert await worker.tick() == 0
    [row] = await outbox_rows(db)
    assert row.status == "failed"
    assert (
        row.last_error == "window closed and no template configured (45015 response out of time limit or "
        "subscription is canceled)"
    )
    clock.advance(hours=2)
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 1


async def test_two_workers_deliver_each_row_exactly_once(db, store, db_url, clock, fake, make_worker):
    expected = {}
    for r in range(12):
        openid = f"o-{r}"
        fake.record_inbound(openid, "message")
        expected[openid] = [f"{openid} 第{i}段" for i in range(4)]
        await enqueue_texts(store, clock, openid, *expected[openid])
    other_store = open_store(db_url)  # a second process's connections
    try:
        first = make_worker("worker-1", batch_size=7)
        second = make_worker("worker-2", fast=other_store, batch_size=7)
        delivered = 0
        for _ in range(20):
            results = await asyncio.gather(first.tick(), second.tick())
            delivered += sum(results)
            if delivered == 48:
                break
    finally:
        await other_store.close()
    assert delivered == 48
    assert len(fake.sent) == 48
    for openid, texts in expected.items():
        assert contents(fake.sent_to(openid)) == texts
    assert {row.status for row in await outbox_rows(db)} == {"sent"}


async def test_a_crashed_workers_lease_is_reclaimed(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    [row_id] = await enqueue_texts(store, clock, "o-1", "进展通知")
    async with db.write() as session:  # claimed by a worker that then died
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(lease_owner="crashed", lease_until=clock.now() + timedelta(seconds=60))
        )
    worker = make_worker(lease_seconds=60)
    assert await worker.tick() == 0
    clock.advance(seconds=60)
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["进展通知"]


async def test_a_worker_that_lost_its_lease_does_not_overwrite(db, store, clock, fake, make_worker):
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "进展通知")
    # The first worker's call hangs, then comes back refused; meanwhile its lease runs out.
    fake.add_fault(SEND, delay_seconds=0.5, errcode=45015)
    slow = asyncio.create_task(make_worker("slow", lease_seconds=60).tick())
    for _ in range(200):  # until the slow call is in flight
        if fake.calls[SEND]:
            break
        await asyncio.sleep(0.01)
    clock.advance(seconds=61)
    assert await make_worker("fast", lease_seconds=60).tick() == 1
    assert await slow == 0
    [row] = await outbox_rows(db)
    assert (row.status, row.last_error) == ("sent", None)
    assert contents(fake.sent) == ["进展通知"]


async def test_a_residents_messages_keep_their_order(db, store, clock, fake, make_worker):
    fake.record_inbound("o-x", "message")
    fake.record_inbound("o-y", "message")
    await enqueue_texts(store, clock, "o-x", "第一段", "第二段", "第三段")
    await enqueue_texts(store, clock, "o-y", "别人的消息")
    fake.add_fault(SEND, errcode=-1, touser="o-x")
    worker = make_worker(backoff_base_seconds=5)

    # The first chunk fails: the later two wait instead of overtaking it; other residents are not held up.
    assert await worker.tick() == 1
    assert contents(fake.sent) == ["别人的消息"]
    assert await worker.tick() == 0
    assert fake.calls[SEND] == 2

    clock.advance(seconds=5)
    assert await worker.tick() == 3
    assert contents(fake.sent_to("o-x")) == ["第一段", "第二段", "第三段"]
    rows = await outbox_rows(db)
    assert [row.attempts for row in rows] == [2, 1, 1, 1]


async def test_a_tick_refills_as_sends_complete_with_at_most_batch_size_in_flight(
    db, store, clock, fake, make_worker, monkeypatch
):
    # 30 residents, 2 rows each: more due rows than batch_size, and later rows that wait for earlier ones.
    for r in range(30):
        fake.record_inbound(f"o-{r}", "message")
    for r in range(30):
        await enqueue_texts(store, clock, f"o-{r}", f"o-{r} 第一段")
    for r in range(30):
        await enqueue_texts(store, clock, f"o-{r}", f"o-{r} 第二段")
    fake.add_fault(SEND, delay_seconds=0.02, times=60)
    worker = make_worker(batch_size=8)
    in_flight = peak = 0
    send_text = worker.api.send_text

    async def counting_send_text(openid: str, content: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await send_text(openid, content)
        finally:
            in_flight -= 1

    monkeypatch.setattr(worker.api, "send_text", counting_send_text)
    assert await worker.tick() == 60
    assert peak == 8
    for r in range(30):
        assert contents(fake.sent_to(f"o-{r}")) == [f"o-{r} 第一段", f"o-{r} 第二段"]
    assert {(row.status, row.attempts) for row in await outbox_rows(db)} == {("sent", 1)}


async def test_a_long_chain_stops_before_its_lease_could_run_out(db, store, clock, fake, api, make_worker):
    """A resident's queued rows share the claim's lease; if sends are slow, the chain hands the rest back (to be
    claimed again under a new lease) instead of sending a row whose lease may run out mid-send — when another
    worker could claim and send it too."""
    fake.record_inbound("o-1", "message")
    await enqueue_texts(store, clock, "o-1", "第一条", "第二条", "第三条")
    real_send = api.send_text
    leases_at_send: list[bool] = []

    async def slow_send(openid, content):
        async with store.read() as tx:
            sql = "SELECT lease_until FROM outbox WHERE CAST(payload AS TEXT) LIKE :p"
            until = tx.dt(await tx.val(sql, p=f"%{content}%"))
        clock.advance(seconds=40)  # each send takes 40 s of the 60 s lease
        leases_at_send.append(clock.now() <= until)  # still ours when the send completes?
        return await real_send(openid, content)

    api.send_text = slow_send
    worker = make_worker(lease_seconds=60)
    delivered = 0
    for _ in range(3):
        delivered += await worker.tick()
    assert delivered == 3 and contents(fake.sent) == ["第一条", "第二条", "第三条"]
    assert leases_at_send == [True, True, True]


async def test_a_row_waiting_for_a_free_send_is_handed_back_before_its_lease_could_run_out(
    db, store, clock, fake, api, make_worker
):
    """A tick claims ahead of what it sends at once; a claimed row that waited for one of the batch_size places
    until its lease is nearly spent is handed back and claimed again, not sent under a lease that may run out."""
    for openid in ("o-1", "o-2"):
        fake.record_inbound(openid, "message")
    await enqueue_texts(store, clock, "o-1", "第一位的通知")
    await enqueue_texts(store, clock, "o-2", "第二位的通知")
    real_send = api.send_text
    leases_at_send: list[bool] = []

    async def slow_send(openid, content):
        async with store.read() as tx:
            sql = "SELECT lease_until FROM outbox WHERE CAST(payload AS TEXT) LIKE :p"
            until = tx.dt(await tx.val(sql, p=f"%{content}%"))
        clock.advance(seconds=40)  # 40 s of the 60 s lease
        leases_at_send.append(clock.now() <= until)
        return await real_send(openid, content)

    api.send_text = slow_send
    worker = make_worker(batch_size=1, lease_seconds=60)  # one send at a time; both rows claimed by one tick
    delivered = 0
    for _ in range(3):
        delivered += await worker.tick()
    assert delivered == 2 and contents(fake.sent) == ["第一位的通知", "第二位的通知"]
    assert leases_at_send == [True, True]  # the second went under a fresh lease, after waiting 40 s
    assert {(row.status, row.attempts) for row in await outbox_rows(db)} == {("sent", 1)}
