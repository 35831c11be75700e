"""WeChat's webhook protocol: signatures, AES safe mode, parsing, and reply rendering.

wechatpy does the parsing and cryptography; this module adds what it leaves out (see shared/WECHAT.md):
constant-time signature checks, timestamp freshness, key rotation, strict UTF-8, and CDATA-safe replies.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply

from bot.wechat.inbound import Inbound, Location, SubscriptionChoice


class Refused(Exception):
    """A request we must not process; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(expected: str | None, *parts: str) -> None:
    if not expected or not hmac.compare_digest(signature(*parts).encode(), expected.encode()):
        raise Refused(403, "bad signature")


def check_timestamp(timestamp: str | None, window_seconds: int, now: float | None = None) -> None:
    try:
        ts = int(timestamp or "")
    except ValueError:
        raise Refused(403, "bad timestamp") from None
    now = time.time() if now is None else now
    if abs(now - ts) > window_seconds:
        raise Refused(403, "stale timestamp")


@dataclass
class Crypto:
    """Safe-mode decryption with the current key and, during rotation, the previous one."""

    token: str
    app_id: str
    keys: tuple[str, ...]

    def __post_init__(self):
        self._cryptos = [WeChatCrypto(self.token, key, self.app_id) for key in self.keys if key]

    @property
    def enabled(self) -> bool:
        return bool(self._cryptos)

    def decrypt(self, body: str, msg_signature: str | None, timestamp: str, nonce: str) -> tuple[str, WeChatCrypto]:
        """The plaintext XML and the crypto that opened it (the reply is encrypted with the same key)."""
        if not self._cryptos:
            raise Refused(400, "encrypted message but no EncodingAESKey configured")
        encrypt = _encrypted_payload(body)
        check_signature(msg_signature, self.token, timestamp, nonce, encrypt)
        for crypto in self._cryptos:
            try:
                plain = crypto.decrypt_message({"Encrypt": encrypt}, msg_signature, timestamp, nonce)
            except Exception:  # wrong key, bad padding, wrong app id: try the previous key
                continue
            return plain, crypto
        raise Refused(400, "cannot decrypt message")


def _encrypted_payload(body: str) -> str:
    outer = _parse_xml(body)
    encrypt = outer.get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise Refused(400, "missing Encrypt")
    return encrypt


def _parse_xml(body: str) -> dict:
    try:
        doc = xmltodict.parse(body)
    except Exception as exc:  # ExpatError, ValueError (entities) — all the client's fault
        raise Refused(400, f"malformed XML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("xml"), dict):
        raise Refused(400, "root element must be <xml>")
    return doc["xml"]


def decode_body(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None


def parse(xml: str) -> tuple[Inbound, str]:
    """The message and the account it was sent to (ToUserName), every parse failure turned into a 400."""
    fields = _parse_xml(xml)
    for name in ("MsgType", "FromUserName", "CreateTime"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise Refused(400, f"missing {name}")
    try:
        msg = parse_message(xml)
        return _to_inbound(msg, fields), str(fields.get("ToUserName") or "")
    except Refused:
        raise
    except Exception as exc:
        raise Refused(400, f"unparseable message: {exc}") from None


_MESSAGE_KINDS = {"text", "image", "voice", "video", "shortvideo", "location", "link"}


def _to_inbound(msg, fields: dict) -> Inbound:
    kind = fields["MsgType"].lower()
    common = {"openid": msg.source, "created": int(fields["CreateTime"])}
    if kind == "event":
        event = str(fields.get("Event") or "").lower()
        key = fields.get("EventKey")
        if msg.type == "subscribe_scan":  # wechatpy strips the qrscene_ prefix
            event, key = "subscribe_scan", msg.scene_id
        elif event == "subscribe" and isinstance(key, str) and key.startswith("qrscene_"):
            # A follow by scanning a parametric QR code, which wechatpy 1.8 leaves as a plain subscribe
            # when the push carries no Ticket.
            event, key = "subscribe_scan", key.removeprefix("qrscene_")
        location = None
        if event == "location":
            location = Location(msg.latitude, msg.longitude, "")
        return Inbound(
            kind="event",
            event=event,
            event_key=key if isinstance(key, str) else None,
            location=location,
            subscriptions=_subscription_choices(event, fields),
            **common,
        )
    if kind not in _MESSAGE_KINDS:
        return Inbound(kind="other", msg_id=_msg_id(fields), **common)
    extra: dict = {}
    if kind == "text":
        extra["text"] = msg.content or ""
        # Tapping a msgmenu option sends its content back as text, with the option's id beside it.
        menu = fields.get("bizmsgmenuid")
        extra["menu_id"] = menu.strip() if isinstance(menu, str) and menu.strip() else None
    elif kind == "voice":
        extra["media_id"] = msg.media_id
        extra["text"] = msg.recognition or None
    elif kind in ("image", "video", "shortvideo"):
        extra["media_id"] = msg.media_id
    elif kind == "location":
        extra["location"] = Location(float(msg.location_x), float(msg.location_y), msg.label or "")
    elif kind == "link":
        extra["text"] = msg.url
    return Inbound(kind=kind, msg_id=_msg_id(fields), **common, **extra)


# 订阅通知 events (wechatpy 1.x does not parse them): the element holding their <List> items, what each item's
# status is read from, and what the choice is called on the Inbound.
_SUBSCRIPTION_EVENTS = {
    "subscribe_msg_popup_event": ("SubscribeMsgPopupEvent", "SubscribeStatusString", "popup"),
    "subscribe_msg_change_event": ("SubscribeMsgChangeEvent", "SubscribeStatusString", "change"),
    "subscribe_msg_sent_event": ("SubscribeMsgSentEvent", "ErrorStatus", "sent"),
}


def _subscription_choices(event: str, fields: dict) -> tuple[SubscriptionChoice, ...]:
    """The templates of a 订阅通知 event; items without a template id or status are dropped, not guessed."""
    if event not in _SUBSCRIPTION_EVENTS:
        return ()
    element, status_field, source = _SUBSCRIPTION_EVENTS[event]
    body = fields.get(element)
    items = body.get("List") if isinstance(body, dict) else None
    if isinstance(items, dict):  # xmltodict: one <List> is a dict, several a list
        items = [items]
    choices = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        template_id, status = item.get("TemplateId"), item.get(status_field)
        if isinstance(template_id, str) and template_id and isinstance(status, str) and status:
            choices.append(SubscriptionChoice(template_id.strip(), status.strip().lower(), source))
    return tuple(choices)


def _msg_id(fields: dict) -> int | None:
    raw = fields.get("MsgId")
    return int(raw) if raw else None


# ---- replies ---------------------------------------------------------------------------------------------


def cdata_safe(text: str) -> str:
    """wechatpy wraps reply text in CDATA unescaped; a `]]>` in it would end the section early."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def render_text_reply(openid: str, account: str, content: str, created: int | None = None) -> str:
    reply = TextReply(source=account, target=openid, content=cdata_safe(content))
    if created is not None:
        reply.time = created
    return reply.render()


def split_text(text: str, max_bytes: int) -> list[str]:
    """Split on paragraph / line boundaries where possible, never inside a character, each ≤ max_bytes."""
    if len(text.encode()) <= max_bytes:
        return [text]
    chunks: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        if len((current + line).encode()) <= max_bytes:
            current += line
            continue
        if current.strip():
            chunks.append(current.rstrip("\n"))
        current = ""
        while len(line.encode()) > max_bytes:
            cut = _cut_at_bytes(line, max_bytes)
            chunks.append(line[:cut])
            line = line[cut:]
        current = line
    if current.strip():
        chunks.append(current.rstrip("\n"))
    return chunks


def _cut_at_bytes(text: str, max_bytes: int) -> int:
    size = 0
    for i, ch in enumerate(text):
        size += len(ch.encode())
        if size > max_bytes:
            return i
    return len(text)
