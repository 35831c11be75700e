"""The fake WeChat enforces what WeChat enforces, over real HTTP, mounted at /fake-wechat/ as in prod."""

from __future__ import annotations

import io

import pytest
import segno
from aiohttp.test_utils import TestServer

from bot.config import Settings
from bot.wechat.api import WeChatAPI, WeChatAPIError
from bot.wechat.fake import VIDEO_DOWNLOAD, FakeWeChat

SETTINGS = Settings()
APP_ID = SETTINGS.wechat.app_id
SECRET = SETTINGS.wechat.app_secret


@pytest.fixture
def api(http, base_url, clock) -> WeChatAPI:
    return WeChatAPI(http, base_url=base_url, app_id=APP_ID, app_secret=SECRET, backoff_base=0, clock=clock)


@pytest.fixture
def call(http, base_url):
    """Raw HTTP: (method, path, params=..., json=...) → the decoded JSON answer."""

    async def call(method: str, path: str, **kwargs) -> dict | list:
        async with http.request(method, f"{base_url}/{path}", **kwargs) as resp:
            return await resp.json(content_type=None)

    return call


async def token_via_get(call, **overrides) -> dict:
    params = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET, **overrides}
    return await call("GET", "cgi-bin/token", params=params)


async def send_text(call, token: str, openid: str = "o-1", content: str = "你好") -> dict:
    body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
    return await call("POST", "cgi-bin/message/custom/send", params={"access_token": token}, json=body)


async def errcode_of(coro) -> int:
    with pytest.raises(WeChatAPIError) as caught:
        await coro
    return caught.value.errcode


# --- tokens ---------------------------------------------------------------------------------------


async def test_token_credentials_are_checked(call):
    assert (await token_via_get(call, appid="wx-someone-else"))["errcode"] == 40013
    assert (await token_via_get(call, secret="guess"))["errcode"] == 40125
    good = await token_via_get(call)
    assert good["expires_in"] == 7200
    assert len(good["access_token"]) > 20


async def test_a_new_token_retires_the_old_one_after_five_minutes(call, fake, clock):
    fake.record_inbound("o-1", "message")
    old = (await token_via_get(call))["access_token"]
    new = (await token_via_get(call))["access_token"]
    assert old != new
    clock.advance(minutes=4, seconds=59)
    assert (await send_text(call, old))["errcode"] == 0
    clock.advance(seconds=1)
    assert (await send_text(call, old))["errcode"] == 40001
    assert (await send_text(call, new))["errcode"] == 0


async def test_stable_token_is_kept_unless_forced(call):
    body = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
    first = await call("POST", "cgi-bin/stable_token", json=body)
    again = await call("POST", "cgi-bin/stable_token", json=body)
    assert again["access_token"] == first["access_token"]
    forced = await call("POST", "cgi-bin/stable_token", json={**body, "force_refresh": True})
    assert forced["access_token"] != first["access_token"]
    assert (await call("POST", "cgi-bin/stable_token", json={**body, "secret": "x"}))["errcode"] == 40125


async def test_token_expires_by_the_clock(call, fake, clock):
    fake.record_inbound("o-1", "message")
    token = (await token_via_get(call))["access_token"]
    clock.advance(seconds=7199)
    assert (await send_text(call, token))["errcode"] == 0
    clock.advance(seconds=1)
    assert (await send_text(call, token))["errcode"] == 42001


async def test_missing_and_unknown_tokens(call):
    assert (await send_text(call, ""))["errcode"] == 41001
    assert (await send_text(call, "made-up-token"))["errcode"] == 40001


# --- the customer-service window ------------------------------------------------------------------


async def test_no_window_without_the_resident_acting_first(api):
    assert await errcode_of(api.send_text("o-1", "您好")) == 45015


async def test_message_window_allows_five_in_48_hours(api, fake, clock):
    fake.record_inbound("o-1", "message")
    for i in range(5):
        await api.send_text("o-1", f"第{i + 1}条")
    assert await errcode_of(api.send_text("o-1", "第6条")) == 45047
    assert len(fake.sent) == 5

    fake.record_inbound("o-1", "message")
    clock.advance(hours=47, minutes=59)
    await api.send_text("o-1", "新窗口")
    clock.advance(minutes=1)
    assert await errcode_of(api.send_text("o-1", "过期了")) == 45015


async def test_window_is_per_resident(api, fake):
    fake.record_inbound("o-1", "message")
    await api.send_text("o-1", "给一号")
    assert await errcode_of(api.send_text("o-2", "给二号")) == 45015


async def test_event_window_allows_three_in_a_minute(api, fake, clock):
    fake.record_inbound("o-1", "event")
    for i in range(3):
        await api.send_text("o-1", f"第{i + 1}条")
    assert await errcode_of(api.send_text("o-1", "第4条")) == 45047

    fake.record_inbound("o-1", "event")
    clock.advance(seconds=59)
    await api.send_text("o-1", "还在窗口内")
    clock.advance(seconds=1)
    assert await errcode_of(api.send_text("o-1", "窗口已关")) == 45015


async def test_unsubscribed_resident(api, fake):
    fake.record_inbound("o-1", "message")
    fake.record_inbound("o-1", "unsubscribe")
    assert await errcode_of(api.send_text("o-1", "您好")) == 43004
    assert await errcode_of(api.send_template("o-1", "tmpl", {})) == 43004


async def test_text_limit_is_2048_utf8_bytes(api, fake):
    fake.record_inbound("o-1", "message")
    await api.send_text("o-1", "诉" * 682)  # 2046 bytes
    assert await errcode_of(api.send_text("o-1", "诉" * 683)) == 45002  # 2049 bytes
    assert await errcode_of(api.send_text("o-1", "a" * 2049)) == 45002
    assert len(fake.sent) == 1


async def test_refused_messages_do_not_spend_quota(api, fake):
    fake.record_inbound("o-1", "event")
    for _ in range(3):
        assert await errcode_of(api.send_text("o-1", "长" * 700)) == 45002
    for i in range(3):
        await api.send_text("o-1", f"第{i + 1}条")


async def test_malformed_requests(call, api, fake):
    fake.record_inbound("o-1", "message")
    token = await api.access_token()
    send = "cgi-bin/message/custom/send"
    params = {"access_token": token}
    assert (await call("POST", send, params=params, json={"touser": "o-1", "msgtype": "fax"}))["errcode"] == 40008
    assert (await call("POST", send, params=params, json={"msgtype": "text"}))["errcode"] == 40003
    assert (await call("POST", send, params=params, data=b"{not json"))["errcode"] == 47001
    assert fake.sent == []


# --- templates, media, QR codes, menu -------------------------------------------------------------


async def test_template_send(api, fake):
    first = await api.send_template("o-1", "tmpl-accepted", {"keyword1": {"value": "XF1"}})
    second = await api.send_template("o-1", "tmpl-accepted", {"keyword1": {"value": "XF2"}})
    assert second["msgid"] != first["msgid"]
    assert [m["msgtype"] for m in fake.sent] == ["template", "template"]
    assert await errcode_of(api.send_template("o-1", "", {})) == 40037


async def test_media_expires_after_three_days(api, fake, clock):
    fake.add_media("m-1", b"RIFF....WEBP", "image/webp")
    clock.advance(days=2, hours=23)
    assert await api.get_media("m-1") == (b"RIFF....WEBP", "image/webp")
    clock.advance(hours=1)
    assert await errcode_of(api.get_media("m-1")) == 40007


async def get_link(call, api, media_id: str) -> str:
    answer = await call(
        "GET", "cgi-bin/media/get", params={"access_token": await api.access_token(), "media_id": media_id}
    )
    return answer["video_url"]


async def download(http, url: str) -> tuple[int, bytes, str]:
    async with http.get(url) as resp:  # no access token: the link is all it takes
        return resp.status, await resp.read(), resp.content_type


async def test_a_video_is_answered_with_a_download_link_that_expires(call, api, http, base_url, fake, clock):
    fake.add_media("v-1", b"\x00\x00\x00\x18ftypmp42 video", "video/mp4")
    link = await get_link(call, api, "v-1")
    assert link.startswith(f"{base_url}/video/download/v-1?vkey=")  # absolute, under the fake's mount point
    assert await download(http, link) == (200, b"\x00\x00\x00\x18ftypmp42 video", "video/mp4")
    assert fake.calls[VIDEO_DOWNLOAD] == 1

    assert (await download(http, link.replace("v-1?", "v-2?")))[0] == 404  # a link is for its media only
    assert (await download(http, link.split("?")[0]))[0] == 404
    clock.advance(seconds=SETTINGS.fake_wechat.video_link_ttl_seconds - 1)
    assert (await download(http, link))[0] == 200
    clock.advance(seconds=1)
    assert (await download(http, link))[0] == 404  # the link died …
    fresh = await get_link(call, api, "v-1")  # … media/get hands out a fresh one while the media lives
    assert fresh != link and (await download(http, fresh))[0] == 200

    clock.advance(days=3)
    assert (await download(http, fresh))[0] == 404  # the media expired, and its links with it
    assert await errcode_of(api.get_media("v-1")) == 40007


async def test_video_links_take_injected_faults_and_uploads(call, api, http, fake):
    uploaded = await call("POST", "media", data=b"mp4-bytes", headers={"Content-Type": "video/mp4"})
    link = await get_link(call, api, uploaded["media_id"])
    fake.add_fault(VIDEO_DOWNLOAD, http_status=503)
    assert (await download(http, link))[0] == 503
    assert await download(http, link) == (200, b"mp4-bytes", "video/mp4")
    await call("POST", "faults", json={"path": VIDEO_DOWNLOAD, "errcode": -1})
    assert (await download(http, link))[1] == b'{"errcode": -1, "errmsg": "injected fault"}'


async def test_video_links_point_at_the_fake_wherever_it_is_served(http, clock):
    fake = FakeWeChat.from_settings(SETTINGS, clock)  # on its own server, as the benchmarks run it
    server = TestServer(fake.app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        root = str(server.make_url("")).rstrip("/")
        api = WeChatAPI(http, base_url=root, app_id=APP_ID, app_secret=SECRET, backoff_base=0, clock=clock)
        fake.add_media("v-own", b"own video", "video/mp4")
        async with http.get(
            f"{root}/cgi-bin/media/get", params={"access_token": await api.access_token(), "media_id": "v-own"}
        ) as resp:
            link = (await resp.json())["video_url"]
        assert link.startswith(f"{root}/video/download/v-own?vkey=")
        assert await api.get_media("v-own") == (b"own video", "video/mp4")
    finally:
        await server.close()


async def test_qrcode_validation(call, api):
    token = await api.access_token()
    params = {"access_token": token}
    bad_action = {"action_name": "QR_WHATEVER", "action_info": {"scene": {"scene_id": 1}}}
    assert (await call("POST", "cgi-bin/qrcode/create", params=params, json=bad_action))["errcode"] == 40052
    str_without_str = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_id": 1}}}
    assert (await call("POST", "cgi-bin/qrcode/create", params=params, json=str_without_str))["errcode"] == 40053
    answer = await api.create_qrcode(7, expire_seconds=10**9)
    assert answer["expire_seconds"] == 2592000  # WeChat's 30-day cap


async def test_showqrcode_serves_the_png_of_an_issued_ticket_without_a_token(http, base_url, api, fake, clock):
    made = await api.create_qrcode("grid:G1")
    assert made["ticket"].endswith("=")  # base64 like WeChat's: the query must carry it escaped

    async def show(ticket: str) -> tuple[int, bytes, str]:
        async with http.get(f"{base_url}/cgi-bin/showqrcode", params={"ticket": ticket}) as resp:
            return resp.status, await resp.read(), resp.content_type

    status, image, content_type = await show(made["ticket"])
    assert (status, content_type) == (200, "image/png") and image.startswith(b"\x89PNG\r\n\x1a\n")
    expected = io.BytesIO()
    segno.make(made["url"], error="m").save(expected, kind="png", scale=8, border=4)
    assert image == expected.getvalue()  # the code encodes the answer's url, as WeChat's does
    assert (await show("gQ-never-issued"))[0] == 404
    assert (await show(made["ticket"][:-2]))[0] == 404
    assert fake.calls["showqrcode"] == 3

    temporary = await api.create_qrcode("grid:G2", expire_seconds=60)
    assert (await show(temporary["ticket"]))[0] == 200
    clock.advance(seconds=60)
    assert (await show(temporary["ticket"]))[0] == 404  # a temporary code's image dies with it
    clock.advance(days=400)
    assert (await show(made["ticket"]))[0] == 200  # a permanent one never does


async def test_the_client_fetches_qr_images_escaping_the_ticket(http, base_url, clock, fake):
    api = WeChatAPI(
        http,
        base_url=base_url,
        app_id=APP_ID,
        app_secret=SECRET,
        backoff_base=0,
        clock=clock,
        qrcode_image_url=f"{base_url}/cgi-bin/showqrcode",
    )
    # "+" unescaped would arrive as a space: keep making codes until a ticket has one (more than half do).
    made = await api.create_qrcode("grid:G1")
    for _ in range(60):
        if "+" in made["ticket"] and "/" in made["ticket"]:
            break
        made = await api.create_qrcode("grid:G1")
    assert "+" in made["ticket"]
    image, content_type = await api.qrcode_image(made["ticket"])
    assert content_type == "image/png" and image.startswith(b"\x89PNG")
    assert await errcode_of(api.qrcode_image("gQ-never-issued")) == -2
    fake.add_fault("showqrcode", http_status=502)
    image_after_a_retry, _ = await api.qrcode_image(made["ticket"])
    assert image_after_a_retry == image
    fake.add_fault("showqrcode", errcode=-1, times=3)  # JSON where an image belongs, beyond the retries
    assert await errcode_of(api.qrcode_image(made["ticket"])) == -1


# --- control endpoints ----------------------------------------------------------------------------


async def test_control_endpoints_over_http(call, api, fake):
    assert (await call("POST", "inbound", json={"openid": "o-1", "kind": "message"}))["ok"]
    assert (await call("POST", "inbound", json={"openid": "o-2", "kind": "event"}))["ok"]
    await api.send_text("o-1", "给一号")
    await api.send_text("o-2", "给二号")

    everything = await call("GET", "sent")
    assert [m["content"] for m in everything] == ["给一号", "给二号"]
    [only] = await call("GET", "sent", params={"touser": "o-2"})
    assert only["api"] == "custom/send"
    assert only["msgtype"] == "text"
    assert only["payload"]["text"]["content"] == "给二号"
    assert only["at"].startswith("2026-11-25T02:00")

    await call("POST", "faults", json={"path": "message/custom/send", "errcode": 45009, "times": 1})
    assert await errcode_of(api.send_text("o-1", "配额")) == 45009
    await api.send_text("o-1", "故障已过")

    await call("POST", "faults", json={"path": "message/custom/send", "http_status": 503, "times": 1})
    async with api.http.post(
        f"{api.base_url}/cgi-bin/message/custom/send",
        params={"access_token": await api.access_token()},
        json={},
    ) as resp:
        assert resp.status == 503

    uploaded = await call("POST", "media", data=b"voice-bytes", headers={"Content-Type": "audio/amr"})
    assert await api.get_media(uploaded["media_id"]) == (b"voice-bytes", "audio/amr")

    assert (await call("POST", "reset"))["ok"]
    assert await call("GET", "sent") == []
    assert await errcode_of(api.send_text("o-1", "窗口随重置关闭")) == 45015


async def test_control_endpoints_refuse_nonsense(http, base_url):
    async with http.post(f"{base_url}/inbound", json={"openid": "o-1", "kind": "dance"}) as resp:
        assert resp.status == 400
    async with http.post(f"{base_url}/faults", json={"path": "message/custom/send"}) as resp:
        assert resp.status == 400


async def test_faults_can_target_one_resident(api, fake):
    fake.record_inbound("o-1", "message")
    fake.record_inbound("o-2", "message")
    fake.add_fault("cgi-bin/message/custom/send", errcode=45009, touser="o-2")
    await api.send_text("o-1", "一号不受影响")
    assert await errcode_of(api.send_text("o-2", "二号出错")) == 45009
    await api.send_text("o-2", "二号恢复")
    assert [m["content"] for m in fake.sent] == ["一号不受影响", "二号恢复"]


# --- 订阅通知 (subscribe/bizsend) -------------------------------------------------------------------

BIZSEND = "cgi-bin/message/subscribe/bizsend"
NOTICE = {
    "character_string1": {"value": "XF20261201-0001"},
    "phrase2": {"value": "已受理"},
    "thing3": {"value": "小区噪音投诉"},
    "time4": {"value": "2026-12-01 10:00"},
}


async def notify(api, openid: str = "o-1", template_id: str = "TPL_A", data: dict | None = None) -> dict:
    return await api.send_subscribe(openid, template_id, data or NOTICE)


async def test_a_long_term_subscription_allows_repeated_notices(api, fake):
    fake.record_subscription("o-1", "TPL_A")
    first = await notify(api)
    second = await notify(api)
    assert first["errcode"] == 0 and second["msgid"] != first["msgid"]
    assert [(m["api"], m["msgtype"], m["content"]) for m in fake.sent] == [("subscribe/bizsend", "subscribe", None)] * 2
    assert fake.sent[0]["payload"] == {"touser": "o-1", "template_id": "TPL_A", "data": NOTICE}
    assert fake.subscriptions_of("o-1")["TPL_A"].long_term


async def test_a_one_off_grant_allows_exactly_one_notice(api, fake):
    fake.record_subscription("o-1", "TPL_ONCE", one_off=True)
    await notify(api, template_id="TPL_ONCE")
    assert await errcode_of(notify(api, template_id="TPL_ONCE")) == 43101
    fake.record_subscription("o-1", "TPL_ONCE", "accept", one_off=True)
    fake.record_subscription("o-1", "TPL_ONCE", "accept", one_off=True)
    await notify(api, template_id="TPL_ONCE")
    await notify(api, template_id="TPL_ONCE")
    assert await errcode_of(notify(api, template_id="TPL_ONCE")) == 43101
    assert len(fake.sent) == 3
    assert fake.subscriptions_of("o-1") == {}  # nothing left once the grants are spent


async def test_no_or_rejected_subscription_is_refused(api, fake):
    assert await errcode_of(notify(api)) == 43101
    fake.record_subscription("o-1", "TPL_A")
    fake.record_subscription("o-1", "TPL_B", one_off=True)
    assert await errcode_of(notify(api, openid="o-2")) == 43101  # another resident's consent is not theirs
    assert await errcode_of(notify(api, template_id="TPL_C")) == 43101  # nor another template's
    fake.record_subscription("o-1", "TPL_A", "reject")
    fake.record_subscription("o-1", "TPL_B", "reject")  # a reject drops unspent grants too
    with pytest.raises(WeChatAPIError) as caught:
        await notify(api)
    assert (caught.value.errcode, caught.value.errmsg) == (43101, "user refuse to accept the msg")
    assert await errcode_of(notify(api, template_id="TPL_B")) == 43101
    assert fake.sent == [] and fake.subscriptions_of("o-1") == {}


async def test_bizsend_checks_openid_template_and_follow(call, api, fake):
    fake.record_subscription("o-1", "TPL_A")
    params = {"access_token": await api.access_token()}
    assert await errcode_of(notify(api, template_id="")) == 40037
    no_template = {"touser": "o-1", "data": NOTICE}
    assert (await call("POST", BIZSEND, params=params, json=no_template))["errcode"] == 40037
    assert await errcode_of(notify(api, openid="")) == 40003
    fake.record_inbound("o-1", "unsubscribe")
    assert await errcode_of(notify(api)) == 43004
    tokenless = await call("POST", BIZSEND, json={"touser": "o-1", "template_id": "TPL_A", "data": NOTICE})
    assert tokenless["errcode"] == 41001
    assert fake.sent == []


# (a value that passes, a value that fails) per type prefix, at WeChat's documented limits.
FIELD_CASES = [
    ("thing1", "诉" * 20, "诉" * 21),
    ("character_string2", "XF20261201-0001" + "x" * 17, "X" * 33),
    ("character_string2", "A-1_b.2/#", "编号XF1"),
    ("character_string2", "XF1", "XF 1"),
    ("phrase3", "已受理", "已受理完毕了"),
    ("phrase3", "处理中", "OK"),
    ("number4", "1" * 32, "1" * 33),
    ("number4", "3.14", "3,14"),
    ("letter5", "a" * 32, "a" * 33),
    ("letter5", "ABCdef", "abc1"),
    ("symbol6", "-+%!", "%%%%%%"),
    ("symbol6", "！", "a"),
    ("name7", "王" * 10, "王" * 11),
    ("phone_number8", "+86-" + "1" * 13, "1" * 18),
    ("phone_number8", "0851-12345678", "0851 1234"),
    ("car_number9", "贵A12345D", "贵A12345DF"),
    ("amount10", "12.50元", "十二元"),
    ("amount10", "100", "1.5.0"),
    ("time11", "2026-12-01 10:00", "2026-12-01"),
    ("time11", "2026年12月1日 10:00", "明天上午"),
    ("time11", "15:01", "25:00"),
    ("date12", "2026-12-01", "2026-13-01"),
    ("date12", "2026年12月1日", "十二月一日"),
]


@pytest.mark.parametrize(("key", "good", "bad"), FIELD_CASES)
async def test_subscribe_data_values_are_checked_by_type(api, fake, key, good, bad):
    fake.record_subscription("o-1", "TPL_A")
    await notify(api, data={key: {"value": good}})
    with pytest.raises(WeChatAPIError) as caught:
        await notify(api, data={key: {"value": bad}, "thing99": {"value": "其他字段无误"}})
    assert (caught.value.errcode, caught.value.errmsg) == (47003, f"argument invalid! data.{key}.value invalid")
    assert len(fake.sent) == 1


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("thing3", {"value": ""}),
        ("thing3", {"value": 17}),
        ("thing3", {}),
        ("thing3", "没有包在 value 里"),
        ("keyword1", {"value": "模板消息的写法"}),  # not a 订阅通知 type
        ("thing", {"value": "没有编号"}),
    ],
)
async def test_subscribe_values_must_be_non_empty_strings_of_known_types(api, fake, key, field):
    fake.record_subscription("o-1", "TPL_A", one_off=True)
    with pytest.raises(WeChatAPIError) as caught:
        await notify(api, data={**NOTICE, key: field})
    assert caught.value.errcode == 47003
    assert f"data.{key}.value" in caught.value.errmsg
    await notify(api)  # the refused notice did not spend the one-off grant


async def test_subscribe_takes_injected_faults(api, fake):
    fake.record_subscription("o-1", "TPL_A", one_off=True)
    fake.add_fault(BIZSEND, errcode=45009)
    assert await errcode_of(notify(api)) == 45009
    await notify(api)  # the fault came before the grant was looked at
    assert fake.calls["message/subscribe/bizsend"] == 2


async def test_subscription_control_endpoint_and_reset(call, api, fake):
    body = {"openid": "o-1", "template_id": "TPL_A", "status": "accept", "one_off": False}
    assert (await call("POST", "subscriptions", json=body))["ok"]
    assert (await call("POST", "subscriptions", json={"openid": "o-1", "template_id": "TPL_B", "one_off": True}))["ok"]
    await notify(api)
    await notify(api)
    await notify(api, template_id="TPL_B")
    assert await errcode_of(notify(api, template_id="TPL_B")) == 43101
    await call("POST", "subscriptions", json={**body, "status": "reject"})
    assert await errcode_of(notify(api)) == 43101

    await call("POST", "subscriptions", json=body)
    assert (await call("POST", "reset"))["ok"]
    assert fake.subscriptions_of("o-1") == {}
    assert await errcode_of(notify(api)) == 43101


@pytest.mark.parametrize(
    "body",
    [
        {"openid": "o-1", "template_id": "TPL_A", "status": "maybe"},
        {"openid": "o-1", "status": "accept"},
        {"template_id": "TPL_A"},
        {"openid": "", "template_id": "TPL_A"},
        {"openid": "o-1", "template_id": 7},
        {"openid": "o-1", "template_id": "TPL_A", "one_off": "yes"},
    ],
)
async def test_subscription_control_endpoint_refuses_nonsense(http, base_url, fake, body):
    async with http.post(f"{base_url}/subscriptions", json=body) as resp:
        assert resp.status == 400
    async with http.post(f"{base_url}/subscriptions", data=b"[1]") as resp:
        assert resp.status == 400
    assert fake.subscriptions_of("o-1") == {}


def test_record_subscription_validates(fake):
    with pytest.raises(ValueError):
        fake.record_subscription("o-1", "TPL_A", "accepted")
    with pytest.raises(ValueError):
        fake.record_subscription("o-1", "", "accept")
    assert fake.subscriptions_of("o-1") == {}
