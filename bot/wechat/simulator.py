"""Plays the WeChat server against a running frontdoor: builds the XML WeChat would send, signs it, encrypts
it in safe mode, posts it, and decrypts the passive reply. Used by `frontdoor chat`, the tests and the bench.

Before delivering a resident's message it tells the fake WeChat API (when given) that the resident interacted,
because on the real platform that is what opens the 48-hour customer-service window. Likewise a resident's
answer to a 订阅通知 popup is recorded in the fake before its event reaches the webhook.
"""

from __future__ import annotations

import itertools
import random
import string
import time
from dataclasses import dataclass
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import aiohttp
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot.wechat.protocol import signature

ACCOUNT = "gh_frontdoor"
_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + random.randrange(1000))


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def message_xml(
    openid: str,
    msg_type: str,
    fields: dict[str, str | float | int],
    *,
    created: int | None = None,
    msg_id: int | None = None,
) -> str:
    created = created or int(time.time())
    parts = [
        f"<ToUserName>{_cdata(ACCOUNT)}</ToUserName>",
        f"<FromUserName>{_cdata(openid)}</FromUserName>",
        f"<CreateTime>{created}</CreateTime>",
        f"<MsgType>{_cdata(msg_type)}</MsgType>",
    ]
    for name, value in fields.items():
        parts.append(f"<{name}>{_cdata(value) if isinstance(value, str) else escape(str(value))}</{name}>")
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id or next(_msg_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def text_xml(openid: str, content: str, **kw) -> str:
    return message_xml(openid, "text", {"Content": content}, **kw)


def image_xml(openid: str, media_id: str, **kw) -> str:
    return message_xml(openid, "image", {"PicUrl": f"http://mmbiz.example/{media_id}", "MediaId": media_id}, **kw)


def video_xml(openid: str, media_id: str, thumb_media_id: str = "", **kw) -> str:
    fields = {"MediaId": media_id, "ThumbMediaId": thumb_media_id or f"{media_id}_thumb"}
    return message_xml(openid, "video", fields, **kw)


def voice_xml(openid: str, media_id: str, recognition: str | None, **kw) -> str:
    fields: dict = {"MediaId": media_id, "Format": "amr"}
    if recognition is not None:
        fields["Recognition"] = recognition
    return message_xml(openid, "voice", fields, **kw)


def location_xml(openid: str, lat: float, lng: float, label: str, **kw) -> str:
    return message_xml(openid, "location", {"Location_X": lat, "Location_Y": lng, "Scale": 15, "Label": label}, **kw)


def event_xml(openid: str, event: str, key: str | None = None, **kw) -> str:
    fields = {"Event": event}
    if key is not None:
        fields["EventKey"] = key
    return message_xml(openid, "event", fields, **kw)


# The 订阅通知 events and the element holding their <List> items (one per template).
SUBSCRIPTION_EVENTS = {
    "subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
    "subscribe_msg_change_event": "SubscribeMsgChangeEvent",
    "subscribe_msg_sent_event": "SubscribeMsgSentEvent",
}
# PopupScene of a popup shown on the account's web page.
POPUP_SCENE = 2
# ErrorStatus of a subscribe_msg_sent_event → its ErrorCode by default (0 is WeChat's; the others *unverified*:
# pass error_code to subscription_report when a test depends on it).
SENT_ERROR_CODES = {"success": 0, "failed:user block": 20004, "failed:system failed": 20001}


def subscription_event_xml(
    openid: str, event: str, items: list[dict[str, str | int]], *, created: int | None = None
) -> str:
    """A 订阅通知 event: one <List> per item (TemplateId, SubscribeStatusString, PopupScene; or for the sent event
    TemplateId, MsgID, ErrorCode, ErrorStatus), wrapped the same way even when there is only one."""
    element = SUBSCRIPTION_EVENTS.get(event)
    if element is None:
        raise ValueError(f"event must be one of {sorted(SUBSCRIPTION_EVENTS)}, got {event!r}")
    lists = []
    for item in items:
        fields = (f"<{k}>{_cdata(v) if isinstance(v, str) else escape(str(v))}</{k}>" for k, v in item.items())
        lists.append("<List>" + "".join(fields) + "</List>")
    xml = message_xml(openid, "event", {"Event": event}, created=created)
    return xml.removesuffix("</xml>") + f"<{element}>{''.join(lists)}</{element}></xml>"


def nonce() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=10))


@dataclass
class Signed:
    """A request as WeChat would send it: query string and body."""

    query: dict[str, str]
    body: str


@dataclass
class WeChatServer:
    token: str
    app_id: str
    encoding_aes_key: str = ""
    # "safe" (AES), "compat" (both) or "plain"
    mode: str = "safe"

    def __post_init__(self):
        self.crypto = WeChatCrypto(self.token, self.encoding_aes_key, self.app_id) if self.encoding_aes_key else None

    def sign(self, xml: str, *, timestamp: int | None = None) -> Signed:
        ts, n = str(timestamp or int(time.time())), nonce()
        query = {"signature": signature(self.token, ts, n), "timestamp": ts, "nonce": n, "openid": _openid_of(xml)}
        if self.mode == "plain" or self.crypto is None:
            return Signed(query, xml)
        encrypted = xmltodict.parse(self.crypto.encrypt_message(xml, n, ts))["xml"]["Encrypt"]
        query.update(encrypt_type="aes", msg_signature=signature(self.token, ts, n, encrypted))
        if self.mode == "compat":
            body = xml.replace("</xml>", f"<Encrypt>{_cdata(encrypted)}</Encrypt></xml>")
        else:
            body = f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
        return Signed(query, body)

    def open_reply(self, signed: Signed, status: int, body: str) -> str | None:
        """The reply's text content; None for `success`/empty. Raises on anything WeChat would reject."""
        if status != 200:
            raise ReplyError(f"HTTP {status}: {body[:200]}")
        if body in ("", "success"):
            return None
        if signed.query.get("encrypt_type") == "aes":
            outer = xmltodict.parse(body)["xml"]
            expected = signature(self.token, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
            if expected != outer["MsgSignature"]:
                raise ReplyError("reply signature does not match")
            body = self.crypto.decrypt_message(body, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
        reply = xmltodict.parse(body)["xml"]
        if reply.get("MsgType") != "text":
            raise ReplyError(f"unexpected reply type {reply.get('MsgType')}")
        return reply["Content"]

    async def post(self, http: aiohttp.ClientSession, url: str, xml: str) -> str | None:
        signed = self.sign(xml)
        async with http.post(
            f"{url}?{urlencode(signed.query)}", data=signed.body.encode(), headers={"Content-Type": "text/xml"}
        ) as resp:
            return self.open_reply(signed, resp.status, await resp.text())


class ReplyError(Exception):
    pass


def _openid_of(xml: str) -> str:
    start = xml.find("<FromUserName><![CDATA[")
    if start < 0:
        return ""
    start += len("<FromUserName><![CDATA[")
    return xml[start : xml.find("]]>", start)]


class Resident:
    """One simulated resident talking through the WeChat server simulation (opens their service window)."""

    def __init__(
        self,
        server: WeChatServer,
        http: aiohttp.ClientSession,
        webhook_url: str,
        openid: str,
        fake_api_url: str | None = None,
    ):
        self.server, self.http, self.url, self.openid = server, http, webhook_url, openid
        self.fake_api_url = fake_api_url
        self._last_created = 0

    def _created(self) -> int:
        """Events are deduplicated by sender + CreateTime, so one person's clicks never share a second."""
        self._last_created = max(int(time.time()), self._last_created + 1)
        return self._last_created

    async def _deliver(self, xml: str, kind: str | None) -> str | None:
        if self.fake_api_url and kind:
            async with self.http.post(f"{self.fake_api_url}/inbound", json={"openid": self.openid, "kind": kind}):
                pass
        return await self.server.post(self.http, self.url, xml)

    async def _upload(self, media_id: str, content: bytes, content_type: str) -> None:
        """On WeChat the photo is on WeChat's servers before the message arrives; the fake must hold it too."""
        if self.fake_api_url:
            async with self.http.post(
                f"{self.fake_api_url}/media",
                params={"media_id": media_id},
                data=content,
                headers={"Content-Type": content_type},
            ):
                pass

    async def say(self, text: str) -> str | None:
        return await self._deliver(text_xml(self.openid, text, created=self._created()), "message")

    async def tap(self, menu_id: str, content: str) -> str | None:
        """Tap an option of a msgmenu message: WeChat sends the option's content as text, with its id."""
        xml = message_xml(self.openid, "text", {"Content": content, "bizmsgmenuid": menu_id}, created=self._created())
        return await self._deliver(xml, "message")

    async def photo(self, media_id: str) -> str | None:
        await self._upload(media_id, b"\xff\xd8\xff\xe0 fake jpeg", "image/jpeg")
        return await self._deliver(image_xml(self.openid, media_id, created=self._created()), "message")

    async def voice(self, media_id: str, recognition: str | None) -> str | None:
        await self._upload(media_id, b"#!AMR\n fake voice", "audio/amr")
        return await self._deliver(voice_xml(self.openid, media_id, recognition, created=self._created()), "message")

    async def video(self, media_id: str) -> str | None:
        await self._upload(media_id, b"\x00\x00\x00\x18ftypmp42 fake video", "video/mp4")
        return await self._deliver(video_xml(self.openid, media_id, created=self._created()), "message")

    async def location(self, lat: float, lng: float, label: str) -> str | None:
        return await self._deliver(location_xml(self.openid, lat, lng, label, created=self._created()), "message")

    async def subscribe(
        self, choices: dict[str, str], *, one_off: bool = False, event: str = "subscribe_msg_popup_event"
    ) -> str | None:
        """Answer a 订阅通知 popup (or, with event="subscribe_msg_change_event", change it in the settings):
        `choices` maps template id → "accept" / "reject". As on WeChat the choice counts before the account hears
        of it: each is recorded in the fake first, then one event carries them all. It opens no service window."""
        if event not in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
            raise ValueError(f"a resident answers with a popup or change event, not {event!r}")
        if not choices or any(status not in ("accept", "reject") for status in choices.values()):
            raise ValueError(f"choices must map template ids to 'accept' or 'reject', got {choices!r}")
        if self.fake_api_url:
            for template_id, status in choices.items():
                body = {"openid": self.openid, "template_id": template_id, "status": status, "one_off": one_off}
                async with self.http.post(f"{self.fake_api_url}/subscriptions", json=body) as resp:
                    resp.raise_for_status()
        items: list[dict[str, str | int]] = []
        for template_id, status in choices.items():
            item: dict[str, str | int] = {"TemplateId": template_id, "SubscribeStatusString": status}
            if event == "subscribe_msg_popup_event":
                item["PopupScene"] = POPUP_SCENE
            items.append(item)
        return await self._deliver(subscription_event_xml(self.openid, event, items, created=self._created()), None)

    async def subscription_report(
        self, template_id: str, status: str = "success", *, error_code: int | None = None, msg_id: int | None = None
    ) -> str | None:
        """WeChat's report on a 订阅通知 sent to this resident (subscribe_msg_sent_event; ErrorStatus `status`:
        "success", "failed:user block", "failed:system failed"). A block is the resident's refusal: it is recorded
        in the fake as a reject first, so later sends get 43101 as on WeChat. It opens no service window."""
        if status not in SENT_ERROR_CODES:
            raise ValueError(f"status must be one of {sorted(SENT_ERROR_CODES)}, got {status!r}")
        if self.fake_api_url and status == "failed:user block":
            body = {"openid": self.openid, "template_id": template_id, "status": "reject"}
            async with self.http.post(f"{self.fake_api_url}/subscriptions", json=body) as resp:
                resp.raise_for_status()
        item: dict[str, str | int] = {
            "TemplateId": template_id,
            "MsgID": msg_id or next(_msg_ids),
            "ErrorCode": SENT_ERROR_CODES[status] if error_code is None else error_code,
            "ErrorStatus": status,
        }
        xml = subscription_event_xml(self.openid, "subscribe_msg_sent_event", [item], created=self._created())
        return await self._deliver(xml, None)

    async def scan(self, scene: str, *, following: bool) -> str | None:
        """Scan a parametric QR code (a grid's poster): a follow carrying `qrscene_<scene>` for a newcomer, a
        SCAN event with the bare scene for someone who follows already."""
        if following:
            return await self.event("SCAN", scene)
        return await self.event("subscribe", f"qrscene_{scene}")

    async def event(self, event: str, key: str | None = None) -> str | None:
        # Only a click, a follow or a scan opens a window; an unfollow closes the door entirely.
        kind = {"unsubscribe": "unsubscribe", "subscribe": "event", "scan": "event", "click": "event"}
        return await self._deliver(event_xml(self.openid, event, key, created=self._created()), kind.get(event.lower()))
