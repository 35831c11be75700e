"""订阅通知: what residents choose in WeChat's subscription popup is recorded from its events, and a notice
outside the customer-service window reaches a resident who accepted, as a subscription message."""

import pytest
from sqlalchemy import select

from bot.wechat.protocol import parse
from bot.wechat.simulator import subscription_event_xml
from storage.models import Subscription
from tests.conftest import start_harness
from tests.test_lifecycle import do, filed

SUB = "SUB_PROGRESS"
OTHER = "SUB_SURVEY"


async def choices(h, openid: str) -> dict[str, tuple[str, int]]:
    async with h.db.read() as s:
        rows = await s.scalars(select(Subscription).where(Subscription.openid == openid))
        return {row.template_id: (row.status, row.grants) for row in rows}


def test_the_events_templates_are_read_from_one_list_item_or_many():
    popup = subscription_event_xml(
        "o-1",
        "subscribe_msg_popup_event",
        [
            {"TemplateId": SUB, "SubscribeStatusString": "accept", "PopupScene": "2"},
            {"TemplateId": OTHER, "SubscribeStatusString": "reject", "PopupScene": "2"},
        ],
    )
    msg, _account = parse(popup)
    assert (msg.kind, msg.event) == ("event", "subscribe_msg_popup_event")
    assert [(c.template_id, c.status, c.source) for c in msg.subscriptions] == [
        (SUB, "accept", "popup"),
        (OTHER, "reject", "popup"),
    ]
    change = subscription_event_xml(
        "o-1", "subscribe_msg_change_event", [{"TemplateId": SUB, "SubscribeStatusString": "reject"}]
    )
    assert [(c.template_id, c.status, c.source) for c in parse(change)[0].subscriptions] == [(SUB, "reject", "change")]
    sent = subscription_event_xml(
        "o-1",
        "subscribe_msg_sent_event",
        [{"TemplateId": SUB, "MsgID": "1700827132819554304", "ErrorCode": "20004", "ErrorStatus": "failed:user block"}],
    )
    assert [(c.status, c.source) for c in parse(sent)[0].subscriptions] == [("failed:user block", "sent")]


def test_an_item_without_template_or_status_is_dropped_not_guessed():
    xml = subscription_event_xml(
        "o-1",
        "subscribe_msg_popup_event",
        [
            {"SubscribeStatusString": "accept"},
            {"TemplateId": SUB},
            {"TemplateId": OTHER, "SubscribeStatusString": "accept"},
        ],
    )
    assert [c.template_id for c in parse(xml)[0].subscriptions] == [OTHER]


async def test_the_popup_and_later_changes_are_recorded_and_unfollowing_forgets_them(harness):
    h = harness
    r = h.resident("o_sub_events")
    assert not await r.subscribe({SUB: "accept", OTHER: "reject"})  # an event the resident expects no answer to
    assert await choices(h, "o_sub_events") == {SUB: ("accept", 0), OTHER: ("reject", 0)}
    await r.subscribe({SUB: "reject"}, event="subscribe_msg_change_event")
    await r.subscribe({OTHER: "accept"}, event="subscribe_msg_change_event")
    assert await choices(h, "o_sub_events") == {SUB: ("reject", 0), OTHER: ("accept", 0)}
    await r.event("unsubscribe")
    assert await choices(h, "o_sub_events") == {}


async def test_a_delivery_report_that_the_resident_blocked_counts_as_a_rejection(harness):
    h = harness
    r = h.resident("o_blocked")
    await r.subscribe({SUB: "accept"})
    await r.subscription_report(SUB, "failed:user block")
    assert await choices(h, "o_blocked") == {SUB: ("reject", 0)}
    await r.subscribe({SUB: "accept"})
    await r.subscription_report(SUB, "success")
    assert await choices(h, "o_blocked") == {SUB: ("accept", 0)}


@pytest.fixture
async def subscription_harness(db_url, clock):
    env = {
        "FRONTDOOR_PUSH_FALLBACK": "subscribe,template",
        "FRONTDOOR_PUSH_SUBSCRIBE_TEMPLATES": f"*={SUB}",
        "FRONTDOOR_PUSH_SUBSCRIBE_ONE_OFF": OTHER,
        "FRONTDOOR_PUSH_TEMPLATES": "*=TM_STATUS",
    }
    async with start_harness(db_url, clock, **env) as h:
        yield h


async def test_one_off_acceptances_are_counted(subscription_harness):
    h = subscription_harness
    r = h.resident("o_one_off")
    await r.subscribe({OTHER: "accept"}, one_off=True)
    await r.subscribe({OTHER: "accept"}, one_off=True)
    assert await choices(h, "o_one_off") == {OTHER: ("accept", 2)}
    await r.subscribe({OTHER: "reject"})
    assert await choices(h, "o_one_off") == {OTHER: ("reject", 0)}


async def test_a_case_accepted_days_later_reaches_the_resident_as_a_subscription_message(subscription_harness):
    h = subscription_harness
    openid = "o_sub_case"
    number = await filed(h, openid)
    await h.resident(openid).subscribe({SUB: "accept"})
    h.clock.advance(hours=49)  # the 48-hour customer-service window has closed
    await do(h, "accept", number)
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    async with h.http.get(f"{h.fake_url}/sent", params={"touser": openid}) as resp:
        sent = [m for m in await resp.json() if m["api"] != "custom/send"]
    [message] = sent
    assert (message["api"], message["payload"]["template_id"]) == ("subscribe/bizsend", SUB)
    assert message["payload"]["data"]["character_string1"] == {"value": number}
    assert message["payload"]["data"]["phrase2"] == {"value": "已受理"}
