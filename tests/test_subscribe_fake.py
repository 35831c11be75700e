"""订阅通知 in the simulator: the event XML WeChat pushes, and a resident answering a popup (recorded in the fake
first, then delivered to the webhook), as `frontdoor chat`'s /subscribe does it."""

from __future__ import annotations

import pytest
import xmltodict
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy import parse_message

from bot import chat
from bot.config import Settings
from bot.wechat.api import WeChatAPI, WeChatAPIError
from bot.wechat.simulator import ACCOUNT, Resident, WeChatServer, subscription_event_xml

WX = Settings().wechat
NOTICE = {"character_string1": {"value": "XF20261201-0001"}, "phrase2": {"value": "已受理"}}


def parsed(xml: str) -> dict:
    return xmltodict.parse(xml, force_list=("List",))["xml"]


# --- the event XML ----------------------------------------------------------------------------------------


def test_popup_event_xml_has_one_list_per_template():
    items = [
        {"TemplateId": "TPL_A", "SubscribeStatusString": "accept", "PopupScene": 2},
        {"TemplateId": "TPL_B", "SubscribeStatusString": "reject", "PopupScene": 2},
    ]
    xml = subscription_event_xml("oOPENID", "subscribe_msg_popup_event", items, created=1610969440)
    message = parse_message(xml)  # wechatpy takes it without error
    assert (message.source, message.target, message.create_time.timestamp()) == ("oOPENID", ACCOUNT, 1610969440)
    root = xmltodict.parse(xml)["xml"]
    assert (root["MsgType"], root["Event"]) == ("event", "subscribe_msg_popup_event")
    assert "MsgId" not in root  # an event: deduplicated by sender + CreateTime
    assert root["SubscribeMsgPopupEvent"]["List"] == [
        {"TemplateId": "TPL_A", "SubscribeStatusString": "accept", "PopupScene": "2"},
        {"TemplateId": "TPL_B", "SubscribeStatusString": "reject", "PopupScene": "2"},
    ]
    assert "<List><TemplateId><![CDATA[TPL_A]]></TemplateId>" in xml
    assert "<PopupScene>2</PopupScene>" in xml


def test_change_and_sent_events_and_a_single_list():
    change = subscription_event_xml(
        "oOPENID", "subscribe_msg_change_event", [{"TemplateId": "TPL_A", "SubscribeStatusString": "reject"}]
    )
    parse_message(change)
    assert "<SubscribeMsgChangeEvent><List><TemplateId><![CDATA[TPL_A]]></TemplateId>" in change
    assert parsed(change)["SubscribeMsgChangeEvent"]["List"] == [
        {"TemplateId": "TPL_A", "SubscribeStatusString": "reject"}
    ]

    result = {"TemplateId": "TPL_A", "MsgID": 1700827132819554304, "ErrorCode": 0, "ErrorStatus": "success"}
    sent = subscription_event_xml("oOPENID", "subscribe_msg_sent_event", [result])
    parse_message(sent)
    assert "<MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode>" in sent
    [item] = parsed(sent)["SubscribeMsgSentEvent"]["List"]
    assert item == {"TemplateId": "TPL_A", "MsgID": "1700827132819554304", "ErrorCode": "0", "ErrorStatus": "success"}


def test_only_subscription_events_are_built():
    with pytest.raises(ValueError):
        subscription_event_xml("oOPENID", "subscribe", [{"TemplateId": "TPL_A"}])


# --- a resident answering the popup -----------------------------------------------------------------------


class Site:
    """A stand-in webhook (records what it receives, and what the fake knew at that moment) beside the fake."""

    def __init__(self, fake):
        self.fake = fake
        self.received: list[tuple[dict, dict]] = []  # (the event, the resident's subscriptions in the fake then)

    async def webhook(self, request: web.Request) -> web.Response:
        event = parsed(await request.text())
        self.received.append((event, self.fake.subscriptions_of(event["FromUserName"])))
        return web.Response(text="success")


@pytest.fixture
async def site(http, fake, clock):
    stand_in = Site(fake)
    parent = web.Application()
    parent.router.add_post("/wechat", stand_in.webhook)
    parent.add_subapp("/fake-wechat/", fake.app())
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")
    stand_in.webhook_url, stand_in.fake_url = f"{root}/wechat", f"{root}/fake-wechat"
    stand_in.api = WeChatAPI(
        http, base_url=stand_in.fake_url, app_id=WX.app_id, app_secret=WX.app_secret, backoff_base=0, clock=clock
    )
    yield stand_in
    await server.close()


def resident(site, http, openid: str = "o-1", *, with_fake: bool = True) -> Resident:
    server = WeChatServer(WX.token, WX.app_id, mode="plain")
    return Resident(server, http, site.webhook_url, openid, site.fake_url if with_fake else None)


async def errcode_of(coro) -> int:
    with pytest.raises(WeChatAPIError) as caught:
        await coro
    return caught.value.errcode


async def test_accepting_in_the_popup_is_recorded_before_the_event_arrives(site, http):
    r = resident(site, http)
    assert await r.subscribe({"TPL_A": "accept", "TPL_B": "reject"}) is None
    [(event, known_then)] = site.received
    assert known_then["TPL_A"].long_term and "TPL_B" not in known_then
    assert event["Event"] == "subscribe_msg_popup_event"
    assert event["SubscribeMsgPopupEvent"]["List"] == [
        {"TemplateId": "TPL_A", "SubscribeStatusString": "accept", "PopupScene": "2"},
        {"TemplateId": "TPL_B", "SubscribeStatusString": "reject", "PopupScene": "2"},
    ]
    await site.api.send_subscribe("o-1", "TPL_A", NOTICE)
    await site.api.send_subscribe("o-1", "TPL_A", NOTICE)
    assert await errcode_of(site.api.send_subscribe("o-1", "TPL_B", NOTICE)) == 43101
    # The popup opened no customer-service window.
    assert await errcode_of(site.api.send_text("o-1", "您好")) == 45015


async def test_a_one_off_acceptance_and_a_change_in_the_settings(site, http):
    r = resident(site, http)
    await r.subscribe({"TPL_ONCE": "accept"}, one_off=True)
    await site.api.send_subscribe("o-1", "TPL_ONCE", NOTICE)
    assert await errcode_of(site.api.send_subscribe("o-1", "TPL_ONCE", NOTICE)) == 43101

    await r.subscribe({"TPL_A": "accept"})
    await r.subscribe({"TPL_A": "reject"}, event="subscribe_msg_change_event")
    event, known_then = site.received[-1]
    assert known_then == {}
    assert event["Event"] == "subscribe_msg_change_event"
    assert event["SubscribeMsgChangeEvent"]["List"] == [{"TemplateId": "TPL_A", "SubscribeStatusString": "reject"}]
    assert await errcode_of(site.api.send_subscribe("o-1", "TPL_A", NOTICE)) == 43101
    created = [int(e["CreateTime"]) for e, _ in site.received]
    assert len(set(created)) == len(created)  # events are deduplicated by sender + CreateTime


async def test_subscribe_refuses_what_a_resident_cannot_answer(site, http, fake):
    r = resident(site, http)
    with pytest.raises(ValueError):
        await r.subscribe({"TPL_A": "maybe"})
    with pytest.raises(ValueError):
        await r.subscribe({"TPL_A": "accept"}, event="subscribe_msg_sent_event")
    assert site.received == [] and fake.subscriptions_of("o-1") == {}


async def test_without_a_fake_only_the_event_is_delivered(site, http, fake):
    await resident(site, http, with_fake=False).subscribe({"TPL_A": "accept"})
    [(event, _)] = site.received
    assert event["SubscribeMsgPopupEvent"]["List"][0]["TemplateId"] == "TPL_A"
    assert fake.subscriptions_of("o-1") == {}


async def test_the_chat_subscribe_command(site, http, capsys):
    r = resident(site, http)
    await chat._send(r, "/subscribe TPL_A")
    await site.api.send_subscribe("o-1", "TPL_A", NOTICE)
    await chat._send(r, "/subscribe TPL_A reject")
    assert await errcode_of(site.api.send_subscribe("o-1", "TPL_A", NOTICE)) == 43101
    assert [e["SubscribeMsgPopupEvent"]["List"][0]["SubscribeStatusString"] for e, _ in site.received] == [
        "accept",
        "reject",
    ]

    for wrong in ("/subscribe", "/subscribe TPL_A maybe", "/subscribe TPL_A reject now"):
        assert await chat._send(r, wrong) is None
        assert chat.SUBSCRIBE_USAGE in capsys.readouterr().out
    assert len(site.received) == 2


async def test_a_delivery_report_and_a_block(site, http):
    r = resident(site, http)
    await r.subscribe({"TPL_A": "accept"})
    sent = await site.api.send_subscribe("o-1", "TPL_A", NOTICE)
    assert await r.subscription_report("TPL_A", msg_id=sent["msgid"]) is None
    event, known_then = site.received[-1]
    assert event["Event"] == "subscribe_msg_sent_event"
    assert event["SubscribeMsgSentEvent"]["List"] == [
        {"TemplateId": "TPL_A", "MsgID": str(sent["msgid"]), "ErrorCode": "0", "ErrorStatus": "success"}
    ]
    assert known_then["TPL_A"].long_term  # a successful report changes nothing

    await r.subscription_report("TPL_A", "failed:user block", error_code=20004)
    event, known_then = site.received[-1]
    [item] = event["SubscribeMsgSentEvent"]["List"]
    assert (item["ErrorCode"], item["ErrorStatus"]) == ("20004", "failed:user block")
    assert known_then == {}  # the block reached the fake before the report reached the webhook
    assert await errcode_of(site.api.send_subscribe("o-1", "TPL_A", NOTICE)) == 43101
    with pytest.raises(ValueError):
        await r.subscription_report("TPL_A", "accept")
    assert len(site.received) == 3
