"""The outbound API client, talking over real HTTP to the fake WeChat mounted as in production."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.clock import FakeClock
from bot.config import Settings
from bot.wechat.api import VIDEO_LINK_ERRCODE, WeChatAPI, WeChatAPIError
from bot.wechat.fake import VIDEO_DOWNLOAD

SEND = "message/custom/send"


@pytest.fixture
def make_api(http, base_url, clock):
    def make(**kwargs) -> WeChatAPI:
        options = {"backoff_base": 0, "clock": clock, **kwargs}
        settings = Settings().wechat
        return WeChatAPI(http, base_url=base_url, app_id=settings.app_id, app_secret=settings.app_secret, **options)

    return make


@pytest.fixture
def api(make_api) -> WeChatAPI:
    return make_api()


async def test_text_goes_out_as_utf8_chinese(api, fake, raw_bodies):
    fake.record_inbound("o-resident", "message")
    await api.send_text("o-resident", "您的诉求已受理")
    assert [m["content"] for m in fake.sent] == ["您的诉求已受理"]
    assert any("您的诉求已受理".encode() in body for body in raw_bodies)
    assert not any(b"\\u" in body for body in raw_bodies)


async def test_token_is_fetched_once_and_reused(api, fake):
    fake.record_inbound("o-1", "message")
    await asyncio.gather(*(api.send_text("o-1", f"第{i}条") for i in range(3)))
    await api.send_text("o-1", "再一条")
    assert fake.calls["stable_token"] == 1
    assert len(fake.sent) == 4


async def test_token_is_renewed_before_it_expires(api, fake, clock):
    fake.record_inbound("o-1", "message")
    await api.send_text("o-1", "一")
    clock.advance(seconds=7200 - 300 - 1)
    await api.send_text("o-1", "二")
    assert fake.calls["stable_token"] == 1
    clock.advance(seconds=2)
    await api.send_text("o-1", "三")
    assert fake.calls["stable_token"] == 2
    assert len(fake.sent) == 3


async def test_token_expired_on_the_server_is_refreshed_once(make_api, fake, clock):
    # The client's clock lags WeChat's: it still trusts a token WeChat has expired (42001).
    api = make_api(clock=FakeClock(clock.now()))
    fake.record_inbound("o-1", "message")
    await api.send_text("o-1", "一")
    clock.advance(seconds=7201)
    await api.send_text("o-1", "二")
    assert fake.calls["stable_token"] == 2
    assert fake.calls[SEND] == 3
    assert [m["content"] for m in fake.sent] == ["一", "二"]


async def test_repeatedly_rejected_token_refreshes_once_then_gives_up(api, fake):
    fake.record_inbound("o-1", "message")
    fake.add_fault(SEND, errcode=40001, times=10)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o-1", "你好")
    assert caught.value.errcode == 40001
    assert not caught.value.retryable
    assert fake.calls[SEND] == 2
    assert fake.calls["stable_token"] == 2
    assert fake.sent == []


async def test_concurrent_rejections_share_one_refresh(api, fake):
    fake.record_inbound("o-1", "message")
    await api.access_token()
    fake.add_fault(SEND, errcode=40001, times=3)
    await asyncio.gather(*(api.send_text("o-1", f"第{i}条") for i in range(3)))
    assert fake.calls["stable_token"] == 2
    assert len(fake.sent) == 3


async def test_system_busy_is_retried_then_succeeds(make_api, fake):
    api = make_api(max_retries=2)
    fake.record_inbound("o-1", "message")
    fake.add_fault(SEND, errcode=-1, times=2)
    await api.send_text("o-1", "你好")
    assert fake.calls[SEND] == 3
    assert len(fake.sent) == 1


async def test_system_busy_beyond_max_retries_raises_retryable(make_api, fake):
    api = make_api(max_retries=2)
    fake.record_inbound("o-1", "message")
    fake.add_fault(SEND, errcode=-1, times=3)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o-1", "你好")
    assert caught.value.errcode == -1
    assert caught.value.retryable
    assert fake.calls[SEND] == 3
    assert fake.sent == []


async def test_http_5xx_is_retried_and_reported_as_minus_one(make_api, fake):
    fake.record_inbound("o-1", "message")
    fake.add_fault(SEND, http_status=502, times=1)
    await make_api(max_retries=1).send_text("o-1", "一")
    assert len(fake.sent) == 1

    fake.add_fault(SEND, http_status=500, times=1)
    with pytest.raises(WeChatAPIError) as caught:
        await make_api(max_retries=0).send_text("o-1", "二")
    assert caught.value.errcode == -1
    assert "HTTP 500" in caught.value.errmsg


async def test_timeout_becomes_minus_one_after_bounded_retries(make_api, fake):
    api = make_api(timeout=0.2, max_retries=1)
    await api.access_token()
    fake.record_inbound("o-1", "message")
    fake.add_fault(SEND, delay_seconds=0.6, errcode=-1, times=2)
    started = time.monotonic()
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o-1", "你好")
    assert caught.value.errcode == -1
    assert "timeout" in caught.value.errmsg
    assert fake.calls[SEND] == 2
    assert time.monotonic() - started < 1.0


async def test_other_errcodes_are_raised_at_once(make_api, fake):
    api = make_api(max_retries=2)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o-never-wrote", "你好")
    assert caught.value.errcode == 45015
    assert fake.calls[SEND] == 1


async def test_wrong_secret_is_reported(http, base_url, fake):
    api = WeChatAPI(http, base_url=base_url, app_id=fake.app_id, app_secret="wrong", backoff_base=0)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text("o-1", "你好")
    assert caught.value.errcode == 40125


async def test_unreachable_server_is_minus_one(http):
    api = WeChatAPI(http, base_url="http://127.0.0.1:9", app_id="a", app_secret="b", max_retries=1, backoff_base=0)
    with pytest.raises(WeChatAPIError) as caught:
        await api.access_token()
    assert caught.value.errcode == -1
    assert caught.value.retryable


async def test_menu_message(api, fake):
    fake.record_inbound("o-1", "event")
    await api.send_menu("o-1", "请选择类别：", [("101", "物业与停车"), ("102", "邻里纠纷")], "回复序号亦可")
    [sent] = fake.sent
    assert sent["msgtype"] == "msgmenu"
    assert sent["payload"]["msgmenu"] == {
        "head_content": "请选择类别：",
        "list": [{"id": "101", "content": "物业与停车"}, {"id": "102", "content": "邻里纠纷"}],
        "tail_content": "回复序号亦可",
    }


async def test_template_message_needs_no_window(api, fake):
    data = {"first": {"value": "您的诉求有新进展"}, "keyword1": {"value": "XF20261125001"}}
    answer = await api.send_template("o-1", "tmpl-progress", data, url="https://example.org/c/1")
    assert isinstance(answer["msgid"], int)
    [sent] = fake.sent
    assert sent["api"] == "template/send"
    assert sent["payload"]["data"] == data
    assert sent["payload"]["url"] == "https://example.org/c/1"


async def test_template_message_without_template_id(api, fake):
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_template("o-1", "", {})
    assert caught.value.errcode == 40037
    assert fake.sent == []


@pytest.fixture
async def wire(http, fake, clock):
    """An API client and, for each request it made to the fake: (method, path, query, JSON body)."""
    seen: list[tuple[str, str, dict, object]] = []

    @web.middleware
    async def capture(request, handler):
        raw = await request.read()
        seen.append((request.method, request.path, dict(request.query), json.loads(raw) if raw else None))
        return await handler(request)

    parent = web.Application(middlewares=[capture])
    parent.add_subapp("/fake-wechat/", fake.app())
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    wx = Settings().wechat
    url = str(server.make_url("/fake-wechat"))
    api = WeChatAPI(http, base_url=url, app_id=wx.app_id, app_secret=wx.app_secret, backoff_base=0, clock=clock)
    yield api, seen
    await server.close()


BIZSEND_PATH = "/fake-wechat/cgi-bin/message/subscribe/bizsend"
NOTICE = {"character_string1": {"value": "XF20261201-0001"}, "phrase2": {"value": "已受理"}}


async def test_subscribe_notice_goes_to_bizsend_with_the_token(wire, fake):
    api, seen = wire
    fake.record_subscription("o-1", "TPL_A")
    answer = await api.send_subscribe("o-1", "TPL_A", NOTICE)
    await api.send_subscribe("o-1", "TPL_A", NOTICE, page="https://example.org/cases/XF20261201-0001")
    assert answer["errcode"] == 0 and isinstance(answer["msgid"], int)
    token = await api.access_token()
    [plain, with_page] = [(path, query, body) for method, path, query, body in seen if path == BIZSEND_PATH]
    assert plain == (BIZSEND_PATH, {"access_token": token}, {"touser": "o-1", "template_id": "TPL_A", "data": NOTICE})
    assert with_page[1] == {"access_token": token}
    assert with_page[2] == {
        "touser": "o-1",
        "template_id": "TPL_A",
        "data": NOTICE,
        "page": "https://example.org/cases/XF20261201-0001",
    }
    assert all(method == "POST" for method, path, *_ in seen if path == BIZSEND_PATH)
    assert [m["api"] for m in fake.sent] == ["subscribe/bizsend", "subscribe/bizsend"]


async def test_subscribe_notice_refused_without_consent(api, fake):
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_subscribe("o-1", "TPL_A", NOTICE)
    assert (caught.value.errcode, caught.value.errmsg) == (43101, "user refuse to accept the msg")
    assert not caught.value.retryable
    assert fake.calls["message/subscribe/bizsend"] == 1  # raised as it came, not retried
    assert fake.sent == []


async def test_subscribe_notice_token_rejection_is_refreshed_once(api, fake):
    fake.record_subscription("o-1", "TPL_A")
    fake.add_fault("message/subscribe/bizsend", errcode=40001)
    await api.send_subscribe("o-1", "TPL_A", NOTICE)
    assert fake.calls["stable_token"] == 2
    assert len(fake.sent) == 1


async def test_media_download_and_expiry(api, fake, clock):
    fake.add_media("media-1", b"\xff\xd8\xff\xe0photo", "image/jpeg")
    assert await api.get_media("media-1") == (b"\xff\xd8\xff\xe0photo", "image/jpeg")
    clock.advance(days=3)
    with pytest.raises(WeChatAPIError) as caught:
        await api.get_media("media-1")
    assert caught.value.errcode == 40007


async def test_unknown_media(api):
    with pytest.raises(WeChatAPIError) as caught:
        await api.get_media("nope")
    assert caught.value.errcode == 40007


VIDEO = b"\x00\x00\x00\x18ftypmp42 a video"


async def test_a_video_is_downloaded_from_its_link_without_the_access_token(base_url, fake, clock):
    requested = []

    async def on_request_start(_session, _ctx, params):
        requested.append(params.url)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    settings = Settings().wechat
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        api = WeChatAPI(
            http, base_url=base_url, app_id=settings.app_id, app_secret=settings.app_secret, backoff_base=0, clock=clock
        )
        fake.add_media("video-1", VIDEO, "video/mp4")
        assert await api.get_media("video-1") == (VIDEO, "video/mp4")
    _token, media_get, link = requested
    assert media_get.path.endswith("/cgi-bin/media/get") and "access_token" in media_get.query
    assert link.path == "/fake-wechat/video/download/video-1"
    assert set(link.query) == {"vkey"}  # the link as WeChat gave it, and no access token
    assert (fake.calls["media/get"], fake.calls[VIDEO_DOWNLOAD]) == (1, 1)


async def test_a_video_link_answering_5xx_is_retried_within_the_call(make_api, fake, caplog):
    caplog.set_level("DEBUG", logger="bot")
    fake.add_media("video-1", VIDEO, "video/mp4")
    fake.add_fault(VIDEO_DOWNLOAD, http_status=502)
    assert await make_api(max_retries=1).get_media("video-1") == (VIDEO, "video/mp4")
    assert (fake.calls["media/get"], fake.calls[VIDEO_DOWNLOAD]) == (1, 2)  # the same link, tried again

    fake.add_fault(VIDEO_DOWNLOAD, http_status=500, times=2)
    with pytest.raises(WeChatAPIError) as caught:
        await make_api(max_retries=1).get_media("video-1")
    assert caught.value.errcode == -1 and caught.value.retryable
    assert "HTTP 500 from the video link at" in caught.value.errmsg and "vkey" not in caught.value.errmsg
    assert "retrying" in caplog.text and "vkey" not in caplog.text  # the link's query may carry credentials


async def test_a_refused_video_link_is_an_error_of_its_own_not_retried_in_the_call(make_api, fake):
    fake.add_media("video-1", VIDEO, "video/mp4")
    fake.add_fault(VIDEO_DOWNLOAD, http_status=404)
    with pytest.raises(WeChatAPIError) as caught:
        await make_api(max_retries=2).get_media("video-1")
    assert caught.value.errcode == VIDEO_LINK_ERRCODE and not caught.value.retryable
    assert "HTTP 404" in caught.value.errmsg and "vkey" not in caught.value.errmsg
    assert fake.calls[VIDEO_DOWNLOAD] == 1  # a dead link does not come back: the next try gets a fresh one
    assert await make_api().get_media("video-1") == (VIDEO, "video/mp4")


async def test_a_4xx_page_is_never_taken_for_media(make_api, fake):
    fake.add_media("photo-1", b"\xff\xd8\xff\xe0photo", "image/jpeg")
    fake.add_fault("media/get", http_status=404)
    with pytest.raises(WeChatAPIError) as caught:
        await make_api().get_media("photo-1")
    assert caught.value.errcode == -2


async def test_qrcodes(api, fake):
    temporary = await api.create_qrcode("grid-12", expire_seconds=3600)
    assert temporary["expire_seconds"] == 3600
    assert fake.qrcodes[temporary["ticket"]] == "grid-12"
    permanent = await api.create_qrcode(42)
    assert "expire_seconds" not in permanent
    assert fake.qrcodes[permanent["ticket"]] == 42
    assert permanent["url"].startswith("http://weixin.qq.com/q/")


async def test_menu_creation(api, fake):
    menu = {"button": [{"type": "click", "name": "我要反映", "key": "FILE_COMPLAINT"}]}
    assert (await api.create_menu(menu))["errcode"] == 0
    assert fake.menu == menu
    with pytest.raises(WeChatAPIError) as caught:
        await api.create_menu({"button": []})
    assert caught.value.errcode == 40016
