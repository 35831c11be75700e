"""Which channel a notice takes (customer-service message or template), and the shared access token."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from contextlib import AsyncExitStack

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot import notify
from bot.cli import main
from bot.notify import OutboxWorker
from bot.services import residents, subscriptions
from bot.services.outbox import enqueue_text
from bot.wechat.api import DatabaseTokenStore, WeChatAPI
from bot.wechat.fake import FakeWeChat
from storage.models import OutboxMessage, Resident, Subscription, WechatToken

SEND = "message/custom/send"
TEMPLATE = "message/template/send"
NUMBER = "XF20261126007"


@pytest.fixture
def fake(settings, clock) -> FakeWeChat:
    return FakeWeChat.from_settings(settings, clock)


@pytest.fixture
async def fake_url(fake):
    parent = web.Application()
    parent.add_subapp("/fake-wechat/", fake.app())
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("/fake-wechat"))
    await server.close()


@pytest.fixture
async def make_worker(db, store, fake_url, clock, settings):
    """Workers as separate instances would have them: each its own HTTP session and WeChatAPI, one database."""
    async with AsyncExitStack() as stack:

        async def make(owner: str = "worker-1", *, templates: tuple[str, ...] = ("*=TM_STATUS",), **push):
            http = await stack.enter_async_context(aiohttp.ClientSession())
            wechat = dataclasses.replace(settings.wechat, api_max_retries=0)
            api = WeChatAPI.from_settings(
                http, wechat, clock, base_url=fake_url, token_store=DatabaseTokenStore(db, wechat.app_id), owner=owner
            )
            push_settings = dataclasses.replace(settings.push, templates=templates, **push)
            return OutboxWorker(store, api, clock, settings.outbox, owner, push=push_settings)

        yield make


async def wrote(store, clock, fake, openid: str) -> None:
    """The resident sent a message: WeChat opens the window, and the bot tracks it."""
    fake.record_inbound(openid, "message")
    async with store.write() as tx:
        await residents.seen(tx, openid, clock.now(), interaction=True)


async def notice(store, clock, openid: str, text: str = "您的案件已受理。", **fields) -> int:
    fields = {"notice": "accepted", "case_number": NUMBER, "status_text": "已受理", **fields}
    async with store.write() as tx:
        return await enqueue_text(tx, clock, openid, text, **fields)


async def rows(db) -> list[OutboxMessage]:
    async with db.read() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_window_open_goes_as_a_customer_service_message_and_is_counted(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-open")
    await notice(store, clock, "o-open")
    assert await (await make_worker()).tick() == 1
    [sent] = fake.sent
    assert (sent["api"], sent["content"]) == ("custom/send", "您的案件已受理。")
    async with db.read() as session:
        assert await session.scalar(select(Resident.cs_sent_since_message)) == 1


async def test_window_closed_goes_as_the_template_with_the_case_number(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-closed")
    clock.advance(hours=49)
    await notice(store, clock, "o-closed", "您的案件已办结。", notice="closed", status_text="已办结")
    worker = await make_worker(
        templates=("*=TM_STATUS", "closed=TM_CLOSED"), template_url="https://x.example/c/{number}"
    )
    assert await worker.tick() == 1
    assert fake.calls[SEND] == 0  # the tracked window said closed: no doomed customer-service attempt
    [sent] = fake.sent
    body = sent["payload"]
    assert (sent["api"], body["template_id"], body["url"]) == (
        "template/send",
        "TM_CLOSED",
        f"https://x.example/c/{NUMBER}",
    )
    assert body["data"]["keyword1"] == {"value": NUMBER}
    assert body["data"]["keyword2"] == {"value": "已办结"}
    assert body["data"]["remark"] == {"value": "您的案件已办结。"}
    assert body["data"]["first"]["value"]
    [row] = await rows(db)
    assert (row.status, row.last_error) == ("sent", None)


async def test_quota_used_up_goes_as_the_template(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-busy")
    for i in range(6):
        await notice(store, clock, "o-busy", f"第{i + 1}条")
    assert await (await make_worker()).tick() == 6
    assert [m["api"] for m in fake.sent] == ["custom/send"] * 5 + ["template/send"]
    assert fake.calls[SEND] == 5  # the sixth was never tried as customer-service: our count knew
    assert fake.sent[-1]["payload"]["data"]["remark"] == {"value": "第6条"}


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_a_window_refusal_at_send_time_falls_back_to_the_template(db, store, clock, fake, make_worker, errcode):
    await wrote(store, clock, fake, "o-refused")  # our count says open …
    fake.add_fault(SEND, errcode=errcode)  # … WeChat says otherwise
    await notice(store, clock, "o-refused")
    assert await (await make_worker()).tick() == 1
    assert fake.calls[SEND] == 1
    [sent] = fake.sent
    assert (sent["api"], sent["payload"]["data"]["keyword1"]) == ("template/send", {"value": NUMBER})
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("sent", 1)


async def test_no_template_configured_fails_with_the_reason_and_is_not_retried(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-late")
    clock.advance(hours=49)
    await notice(store, clock, "o-late")
    worker = await make_worker(templates=())
    assert await worker.tick() == 0
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("window closed and no template configured")
    clock.advance(hours=2)
    assert await worker.tick() == 0
    assert fake.sent == [] and fake.calls[SEND] == 0 and fake.calls[TEMPLATE] == 0


async def test_a_notice_without_a_case_number_cannot_use_the_template(db, store, clock, fake, make_worker):
    await notice(store, clock, "o-unknown", case_number=None)  # no resident record: WeChat decides (45015)
    assert await (await make_worker()).tick() == 0
    [row] = await rows(db)
    assert row.status == "failed"
    assert "no case number" in row.last_error and "45015" in row.last_error


async def test_two_workers_share_one_token_row_and_fetch_once(db, store, clock, fake, make_worker, monkeypatch):
    monkeypatch.setattr(notify, "PREFETCH", 1)  # each claim takes batch_size rows, so both workers get some
    for openid in ("o-a", "o-b", "o-c", "o-d"):
        await wrote(store, clock, fake, openid)
        await notice(store, clock, openid)
    first, second = await make_worker("w1"), await make_worker("w2")
    first.settings = second.settings = dataclasses.replace(first.settings, batch_size=2)
    assert sum(await asyncio.gather(first.tick(), second.tick())) == 4
    assert fake.calls["stable_token"] == 1
    assert fake.calls["token"] == 0
    assert first.api._token == second.api._token is not None
    async with db.read() as session:
        [stored] = list(await session.scalars(select(WechatToken)))
    assert (stored.access_token, stored.lease_owner) == (first.api._token, None)

    # A third instance started later reads the row; it does not fetch.
    third = await make_worker("w3")
    await wrote(store, clock, fake, "o-e")
    await notice(store, clock, "o-e")
    assert await third.tick() == 1
    assert fake.calls["stable_token"] == 1


async def test_an_expired_token_is_refreshed_once_for_all_instances(db, store, clock, fake, make_worker, monkeypatch):
    monkeypatch.setattr(notify, "PREFETCH", 1)  # each claim takes batch_size rows, so both workers get some
    first, second = await make_worker("w1"), await make_worker("w2")
    await wrote(store, clock, fake, "o-a")
    await notice(store, clock, "o-a")
    assert await first.tick() == 1
    old = first.api._token
    clock.advance(seconds=7300)  # past WeChat's 7200 s
    for openid in ("o-a", "o-b"):
        await wrote(store, clock, fake, openid)
        await notice(store, clock, openid)
    first.settings = second.settings = dataclasses.replace(first.settings, batch_size=1)
    assert sum(await asyncio.gather(first.tick(), second.tick())) == 2
    assert fake.calls["stable_token"] == 2
    assert first.api._token == second.api._token != old


async def test_a_rejected_token_is_refreshed_once_and_the_call_retried(db, store, clock, fake, make_worker):
    worker = await make_worker()
    await wrote(store, clock, fake, "o-a")
    await notice(store, clock, "o-a")
    fake.add_fault(SEND, errcode=40001)
    assert await worker.tick() == 1
    assert (fake.calls["stable_token"], fake.calls[SEND]) == (2, 2)


async def test_the_cli_lists_failed_rows_with_masked_openids(
    db, db_url, store, clock, fake, make_worker, monkeypatch, capsys
):
    await wrote(store, clock, fake, "o-fine-resident")
    await notice(store, clock, "o-fine-resident")
    await notice(store, clock, "o-gone-resident")  # never wrote, no template: fails
    assert await (await make_worker(templates=())).tick() == 1
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", db_url)

    assert await asyncio.to_thread(main, ["outbox", "list", "--failed"]) == 0
    out = capsys.readouterr().out
    assert "o-go…" in out and "window closed and no template configured" in out and "失败" in out
    assert "o-gone-resident" not in out and "o-fi…" not in out

    assert await asyncio.to_thread(main, ["outbox", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["resident"], r["status"], r["kind"], r["attempts"]) for r in listed] == [
        ("o-go…", "failed", "text", 1),
        ("o-fi…", "sent", "text", 1),
    ]
    assert set(listed[0]) == {"id", "created", "resident", "kind", "status", "attempts", "last_error"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FRONTDOOR_PUSH_TEMPLATES": "accepted TM1"}, "push.templates"),
        ({"FRONTDOOR_PUSH_TEMPLATE_NUMBER_FIELD": ""}, "push.template_number_field"),
        ({"FRONTDOOR_PUSH_TEMPLATE_URL": "https://x/{case}"}, "push.template_url"),
        ({"FRONTDOOR_PUSH_TOKEN_LEASE_SECONDS": "5"}, "push.token_lease_seconds"),
    ],
)
def test_bad_push_settings_are_refused_by_name(env, named):
    import os

    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(path=os.devnull, env=env)


def test_templates_are_chosen_per_notice_with_a_default():
    from bot.config import PushSettings

    push = PushSettings(templates=("*=TM_ANY", "closed=TM_CLOSED"))
    assert (push.template_for("closed"), push.template_for("accepted"), push.template_for(None)) == (
        "TM_CLOSED",
        "TM_ANY",
        "TM_ANY",
    )
    assert PushSettings().template_for("closed") is None


# ---- 订阅通知: the subscription channel outside the window -----------------------------------------------------

SUBSCRIBE = "message/subscribe/bizsend"
SUB = "SUB_PROGRESS"
LONG_NOTICE = "您反映的“小区停车收费过高”问题已受理，承办单位将在60日内办理并答复您，请耐心等待。"


async def accepted(store, clock, fake, openid: str, template_id: str = SUB, *, one_off: bool = False) -> None:
    """The resident accepted the template in WeChat's popup: WeChat knows it, and the bot recorded the event."""
    fake.record_subscription(openid, template_id, "accept", one_off=one_off)
    async with store.write() as tx:
        one_off_ids = (template_id,) if one_off else ()
        await subscriptions.record(tx, openid, [(template_id, "accept", "popup")], clock.now(), one_off=one_off_ids)


def subscription_worker(make_worker, *, fallback=("subscribe", "template"), **push):
    return make_worker(fallback=fallback, subscribe_templates=(f"*={SUB}",), **push)


async def subscription_of(db, openid: str) -> Subscription | None:
    async with db.read() as session:
        return await session.scalar(select(Subscription).where(Subscription.openid == openid))


async def test_outside_the_window_a_notice_goes_as_the_subscription_the_resident_accepted(
    db, store, clock, fake, make_worker
):
    await wrote(store, clock, fake, "o-sub")
    await accepted(store, clock, fake, "o-sub")
    clock.advance(hours=49)
    await notice(store, clock, "o-sub", LONG_NOTICE, url="https://x.example/case")
    worker = await subscription_worker(make_worker)
    assert await worker.tick() == 1
    [sent] = fake.sent
    body = sent["payload"]
    assert (sent["api"], body["template_id"], body["page"]) == ("subscribe/bizsend", SUB, "https://x.example/case")
    local = clock.now().astimezone(worker.tz).strftime("%Y-%m-%d %H:%M")
    assert body["data"] == {
        "character_string1": {"value": NUMBER},
        "phrase2": {"value": "已受理"},
        "thing3": {"value": worker.texts("push.subscribe_more")},  # the notice is longer than a thing field takes
        "time4": {"value": local},
    }
    assert fake.calls[TEMPLATE] == 0
    [row] = await rows(db)
    assert (row.status, row.last_error) == ("sent", None)


async def test_a_short_notice_goes_whole_and_the_page_comes_from_the_settings(db, store, clock, fake, make_worker):
    await accepted(store, clock, fake, "o-short")
    await notice(store, clock, "o-short", "您的案件已办结，请评价。", notice="closed", status_text="已办结")
    worker = await subscription_worker(make_worker, subscribe_page="https://x.example/c/{number}")
    assert await worker.tick() == 1  # no resident record at all: WeChat says 45015, the subscription carries it
    [sent] = [m for m in fake.sent if m["api"] == "subscribe/bizsend"]
    assert sent["payload"]["data"]["thing3"] == {"value": "您的案件已办结，请评价。"}
    assert sent["payload"]["page"] == f"https://x.example/c/{NUMBER}"


async def test_without_an_accepted_subscription_the_template_carries_the_notice(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-none")
    clock.advance(hours=49)
    await notice(store, clock, "o-none")
    assert await (await subscription_worker(make_worker)).tick() == 1
    assert fake.calls[SUBSCRIBE] == 0  # our record knew: no doomed attempt
    assert [m["api"] for m in fake.sent] == ["template/send"]


async def test_a_subscription_wechat_refuses_falls_back_and_is_recorded_as_rejected(
    db, store, clock, fake, make_worker
):
    await wrote(store, clock, fake, "o-gone")
    async with store.write() as tx:  # the bot's record says accepted; WeChat knows the resident turned it off
        await subscriptions.record(tx, "o-gone", [(SUB, "accept", "popup")], clock.now())
    clock.advance(hours=49)
    await notice(store, clock, "o-gone")
    worker = await subscription_worker(make_worker)
    assert await worker.tick() == 1
    assert fake.calls[SUBSCRIBE] == 1
    assert [m["api"] for m in fake.sent] == ["template/send"]
    assert (await subscription_of(db, "o-gone")).status == "reject"
    await notice(store, clock, "o-gone", "第二条通知")
    assert await worker.tick() == 1
    assert fake.calls[SUBSCRIBE] == 1  # not asked again: the record was corrected
    assert [m["api"] for m in fake.sent] == ["template/send", "template/send"]


async def test_a_one_off_acceptance_carries_exactly_one_notice(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-once")
    await accepted(store, clock, fake, "o-once", one_off=True)
    clock.advance(hours=49)
    await notice(store, clock, "o-once", "第一条通知")
    await notice(store, clock, "o-once", "第二条通知")
    worker = await subscription_worker(make_worker, subscribe_one_off=(SUB,))
    assert await worker.tick() == 2
    assert [m["api"] for m in fake.sent] == ["subscribe/bizsend", "template/send"]
    assert fake.calls[SUBSCRIBE] == 1  # the used-up acceptance was known in the same tick
    assert (await subscription_of(db, "o-once")).grants == 0
    await accepted(store, clock, fake, "o-once", one_off=True)  # accepted again: one more
    await notice(store, clock, "o-once", "第三条通知")
    assert await worker.tick() == 1
    assert fake.sent[-1]["api"] == "subscribe/bizsend"


async def test_when_no_channel_can_carry_a_notice_it_fails_with_every_reason(db, store, clock, fake, make_worker):
    await wrote(store, clock, fake, "o-nothing")
    clock.advance(hours=49)
    await notice(store, clock, "o-nothing")
    worker = await subscription_worker(make_worker, fallback=("subscribe",))
    assert await worker.tick() == 0
    [row] = await rows(db)
    assert row.status == "failed"
    assert f"the resident has not accepted 订阅通知 {SUB}" in row.last_error
    assert "window closed (tracked)" in row.last_error
    assert fake.sent == []


async def test_values_are_made_to_fit_their_field_types(db, store, clock, fake, make_worker):
    await accepted(store, clock, fake, "o-fit")
    await notice(store, clock, "o-fit", "短通知", status_text="已转交有关部门办理")  # longer than a phrase takes
    worker = await subscription_worker(make_worker, subscribe_status_field="phrase2", subscribe_time_field="")
    assert await worker.tick() == 1  # the fake refuses (47003) any value over its type's limit
    [sent] = fake.sent
    assert sent["payload"]["data"] == {
        "character_string1": {"value": NUMBER},
        "phrase2": {"value": "有新进展"},  # cut to five characters it would say something else
        "thing3": {"value": "短通知"},
    }
