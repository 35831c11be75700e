"""The webhook speaks WeChat's protocol and refuses everything else before storing anything."""

import asyncio
import time
from urllib.parse import urlencode

import pytest
import xmltodict
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from bot import app as app_module
from bot.wechat import simulator
from bot.wechat.protocol import signature, split_text
from bot.wechat.simulator import WeChatServer
from storage.models import InboundMessage, Resident
from tests.conftest import free_port, make_settings, start_harness

OLD_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


async def stored_rows(h) -> int:
    async with h.db.read() as s:
        inbound = await s.scalar(select(func.count()).select_from(InboundMessage))
        residents = await s.scalar(select(func.count()).select_from(Resident))
    return inbound + residents


async def post_raw(h, query: dict, body: bytes):
    async with h.http.post(f"{h.webhook}?{urlencode(query)}", data=body) as resp:
        return resp.status, await resp.text()


def plain_query(token: str, ts: int | None = None) -> dict:
    ts = str(ts or int(time.time()))
    return {"signature": signature(token, ts, "n0nce"), "timestamp": ts, "nonce": "n0nce"}


async def test_get_verification_echoes_only_a_fresh_valid_signature(harness):
    token = harness.settings.wechat.token
    good = {**plain_query(token), "echostr": "1234567890"}
    async with harness.http.get(harness.webhook, params=good) as resp:
        assert (resp.status, await resp.text()) == (200, "1234567890")
    forged = {**good, "signature": "0" * 40}
    async with harness.http.get(harness.webhook, params=forged) as resp:
        assert resp.status == 403
    stale = {**plain_query(token, int(time.time()) - 3600), "echostr": "x"}
    async with harness.http.get(harness.webhook, params=stale) as resp:
        assert resp.status == 403


@pytest.fixture
async def compat(db_url, clock):
    """frontdoor configured in compatible mode: plain and encrypted messages both accepted."""
    async with start_harness(db_url, clock, FRONTDOOR_WECHAT_ENCRYPTION_MODE="compatible") as h:
        yield h


@pytest.mark.parametrize("mode", ["safe", "compat", "plain"])
async def test_compatible_mode_answers_every_encryption_mode_readably(compat, mode):
    wx = compat.settings.wechat
    server = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key, mode)
    reply = await server.post(compat.http, compat.webhook, simulator.text_xml("o_mode", "帮助"))
    assert "我的案件" in reply


async def test_safe_mode_refuses_a_plain_request_whose_body_nobody_signed(harness):
    """The plain signature covers token, timestamp and nonce only: a recent URL plus any body would pass."""
    wx = harness.settings.wechat
    encrypted = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key, "safe")
    assert "我的案件" in await encrypted.post(harness.http, harness.webhook, simulator.text_xml("o_v", "帮助"))
    forged = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key, "plain").sign(
        simulator.text_xml("o_victim", "我的案件")
    )
    assert await post_raw(harness, forged.query, forged.body.encode()) == (403, "encryption required (safe mode)")
    assert await stored_rows(harness) == 2  # o_v and their message only: the forgery left nothing


async def test_a_body_arriving_in_several_tcp_segments_is_read_whole(harness):
    wx = harness.settings.wechat
    signed = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key).sign(simulator.text_xml("o_slow_net", "帮助"))
    body = signed.body.encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(harness.url.rsplit(":", 1)[1]))
    head = (
        f"POST {harness.settings.webhook.path}?{urlencode(signed.query)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body[:100])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(body[100:])
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert b" 200 " in status_line
    reply_body = rest.split(b"\r\n\r\n", 1)[1].decode()
    assert "我的案件" in harness.wechat.open_reply(signed, 200, reply_body)


async def test_previous_aes_key_still_works_during_rotation(db_url, clock):
    port = free_port()
    settings = make_settings(db_url, port, FRONTDOOR_WECHAT_PREVIOUS_ENCODING_AES_KEY=OLD_KEY)
    app = app_module.build_app(settings, clock=clock, run_scheduler=False)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        import aiohttp

        wx = settings.wechat
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/wechat"
            old = WeChatServer(wx.token, wx.app_id, OLD_KEY)  # WeChat still encrypting with the old key
            assert "我的案件" in await old.post(http, url, simulator.text_xml("o_rot", "帮助"))  # and reads our reply
            new = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key)
            assert "我的案件" in await new.post(http, url, simulator.text_xml("o_rot", "帮助"))
    finally:
        await server.close()


async def test_forged_and_stale_requests_are_refused_and_store_nothing(harness):
    wx = harness.settings.wechat
    server = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key)
    signed = server.sign(simulator.text_xml("o_forger", "投诉"))
    assert (await post_raw(harness, {**signed.query, "signature": "f" * 40}, signed.body.encode()))[0] == 403
    assert (await post_raw(harness, {**signed.query, "msg_signature": "f" * 40}, signed.body.encode()))[0] == 403
    stale = server.sign(simulator.text_xml("o_forger", "投诉"), timestamp=int(time.time()) - 600)
    assert (await post_raw(harness, stale.query, stale.body.encode()))[0] == 403
    plain = plain_query(wx.token)
    del plain["signature"]
    assert (await post_raw(harness, plain, b"<xml/>"))[0] == 403
    assert await stored_rows(harness) == 0


BAD_BODIES = {
    "malformed": b"<xml><ToUserName>x</ToUserName",
    "entities": b'<!DOCTYPE xml [<!ENTITY boom "boom">]><xml><MsgType>&boom;</MsgType></xml>',
    "not utf-8": "<xml><MsgType>text</MsgType><Content>投诉</Content></xml>".encode("gbk"),
    "wrong root": b"<message><MsgType>text</MsgType><FromUserName>o</FromUserName></message>",
    "no MsgType": b"<xml><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime></xml>",
    "duplicated MsgType": b"<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><MsgType>image</MsgType></xml>",
    "bad MsgId": b"<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
    b"<Content>hi</Content><MsgId>abc</MsgId></xml>",
    "json": b'{"MsgType": "text"}',
    "empty": b"",
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_malformed_plain_bodies_are_400_never_500(compat, name):
    status, _ = await post_raw(compat, plain_query(compat.settings.wechat.token), BAD_BODIES[name])
    assert status == 400
    assert await stored_rows(compat) == 0


@pytest.mark.parametrize("name", [n for n in BAD_BODIES if n != "empty"])
async def test_malformed_messages_inside_a_valid_envelope_are_400(harness, name):
    """Correctly signed and encrypted — but what was encrypted is not a message."""
    wx = harness.settings.wechat
    crypto = WeChatCrypto(wx.token, wx.encoding_aes_key, wx.app_id)
    q = plain_query(wx.token)
    encrypt = xmltodict.parse(crypto.encrypt_message(BAD_BODIES[name], q["nonce"], q["timestamp"]))["xml"]["Encrypt"]
    q.update(encrypt_type="aes", msg_signature=signature(wx.token, q["timestamp"], q["nonce"], encrypt))
    body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    assert (await post_raw(harness, q, body))[0] == 400
    assert await stored_rows(harness) == 0


async def test_malformed_encrypted_bodies_are_400(harness):
    token = harness.settings.wechat.token
    for encrypt in ("not base64 at all!", "QUJD", ""):
        q = plain_query(token)
        q.update(encrypt_type="aes", msg_signature=signature(token, q["timestamp"], q["nonce"], encrypt))
        body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        assert (await post_raw(harness, q, body))[0] == 400
    assert await stored_rows(harness) == 0


async def test_oversized_body_is_413(harness):
    body = b"<xml><Content>" + b"a" * (harness.settings.webhook.max_body_bytes + 10) + b"</Content></xml>"
    status, _ = await post_raw(harness, plain_query(harness.settings.wechat.token), body)
    assert status == 413
    status, _ = await post_raw(harness, {**plain_query(harness.settings.wechat.token), "encrypt_type": "aes"}, body)
    assert status == 413
    assert await stored_rows(harness) == 0


OTHER_TYPES = [
    simulator.message_xml("o_types", "video", {"MediaId": "v1", "ThumbMediaId": "t1"}),
    simulator.message_xml("o_types", "shortvideo", {"MediaId": "v2", "ThumbMediaId": "t2"}),
    simulator.message_xml("o_types", "link", {"Title": "t", "Description": "d", "Url": "http://x"}),
    simulator.message_xml("o_types", "miniprogrampage", {"Title": "t", "AppId": "wx1", "PagePath": "p"}),
    simulator.message_xml("o_types", "somethingnew", {"Foo": "bar"}),
]
OTHER_EVENTS = [
    simulator.event_xml("o_types", "LOCATION", None).replace(
        "</xml>", "<Latitude>26.6</Latitude><Longitude>106.6</Longitude><Precision>30</Precision></xml>"
    ),
    simulator.event_xml("o_types", "VIEW", "https://example.cn"),
    simulator.event_xml("o_types", "SCAN", "grid_12"),
    simulator.event_xml("o_types", "subscribe", "qrscene_grid_12"),
    simulator.event_xml("o_types", "unsubscribe"),
    simulator.event_xml("o_types", "TEMPLATESENDJOBFINISH").replace("</xml>", "<Status>success</Status></xml>"),
    simulator.event_xml("o_types", "subscribe_msg_popup_event"),
    simulator.event_xml("o_types", "CLICK", "UNKNOWN_KEY"),
    simulator.event_xml("o_types", "brand_new_event"),
]


async def test_every_message_and_event_type_gets_a_polite_answer_or_success(harness):
    wx = harness.settings.wechat
    server = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key)
    for xml in OTHER_TYPES:
        reply = await server.post(harness.http, harness.webhook, xml)
        assert "暂时无法处理这类消息" in reply
    for created, xml in enumerate(OTHER_EVENTS, start=1_700_000_000):
        xml = xml.replace(f"<CreateTime>{_created_of(xml)}</CreateTime>", f"<CreateTime>{created}</CreateTime>")
        reply = await server.post(harness.http, harness.webhook, xml)
        assert reply is None or "欢迎关注" in reply


def _created_of(xml: str) -> str:
    return xml.split("<CreateTime>")[1].split("</CreateTime>")[0]


async def test_cdata_terminator_in_resident_text_cannot_break_the_reply(harness):
    r = harness.resident("o_inject")
    await r.say("投诉")
    await r.say("1")
    summary = await r.say("小区]]><MsgType>news</MsgType>门口")
    assert summary is not None  # the simulator parsed the reply XML and found one text message
    await r.say("门口有人乱停车堵住了消防通道")
    summary = await r.say("跳过")
    assert "2. 地点：小区]]><MsgType>news</MsgType>门口" in summary


async def test_long_reply_is_split_and_the_rest_is_pushed(harness):
    r = harness.resident("o_long")
    await r.say("投诉")
    await r.say("1")
    await r.say("云城街道")
    story = "，".join(["停车费太高，业主多次反映没有回应"] * 110)
    await r.say(story)
    summary = await r.say("跳过")
    assert f"……（共 {len(story)} 字）" in summary  # the summary echoes the start, not the whole story
    number = (await r.say("提交")).split("案件编号：")[1].split("。")[0]
    first = await r.say(f"查询 {number}")  # the case's details carry the whole story
    limit = harness.settings.webhook.max_text_bytes
    assert len(first.encode()) <= limit and f"案件编号：{number}" in first
    assert await harness.deliver_outbox() == 0  # held back so it cannot overtake the reply on screen
    harness.clock.advance(seconds=3)
    assert await harness.deliver_outbox() >= 1
    pushed = await harness.pushed("o_long")
    assert all(len(p.encode()) <= limit for p in pushed)
    assert (first + "".join(pushed)).replace("\n", "").count("停车费太高") == story.count("停车费太高")
    assert "群众通过微信提交" in pushed[-1]  # the ledger, at the end, arrives too


def test_split_text_never_cuts_a_character_and_loses_nothing():
    text = "投诉内容" * 1000 + "\n" + "第二段" * 10
    chunks = split_text(text, 2000)
    assert all(len(c.encode()) <= 2000 for c in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")
    assert split_text("短", 2000) == ["短"]
    assert [len(c) for c in split_text("a" * 199 + "\n\n" + "b" * 250, 200)] == [199, 200, 50]  # no empty part
