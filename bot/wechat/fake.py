"""A faithful fake of the WeChat API for development mode, the simulator and tests.

It answers with WeChat's shapes and errcodes and enforces the rules that bite in production: tokens that
expire and rotate, the customer-service window and its quotas, the text size limit, media that expires, and
订阅通知 (subscribe/bizsend) that only reach a resident who accepted the template, with its data values checked.
Faults (errcodes, HTTP errors, delays) can be injected per path. State lives in memory: a one-process dev fake.

Mounted by the main app with `app.add_subapp("/fake-wechat/", fake.app())`; control endpoints that WeChat does
not have (`sent`, `inbound`, `subscriptions`, `faults`, `media`, `reset`) sit beside the API under the same
prefix. So does `video/download/<media_id>?vkey=…`, the download host of WeChat's temporary video links
(media/get answers a video with `{"video_url": …}`); its absolute URL is built from the request, wherever the
fake is mounted. And `cgi-bin/showqrcode?ticket=…`, which WeChat serves from mp.weixin.qq.com rather than the API
host: a real PNG QR code of the ticket's `url`, no access token needed (bot.app.qrcode_image_base points there).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import segno
from aiohttp import web

from bot.clock import Clock
from bot.config import FakeWechatSettings, Settings

# Both the old and the new token work this long after a rotation, as on WeChat.
TOKEN_GRACE = timedelta(minutes=5)
MAX_TEXT_BYTES = 2048
CUSTOM_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "music", "news", "mpnews", "msgmenu", "wxcard", "miniprogrampage"}
)
QR_ACTIONS = frozenset({"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"})
INBOUND_KINDS = ("message", "event", "unsubscribe")
# What a resident answered in a 订阅通知 popup (or later in the settings) for one template.
SUBSCRIPTION_STATUSES = ("accept", "reject")
# The endpoint serving a video's temporary download link: its name for faults (`add_fault`) and `calls`.
VIDEO_DOWNLOAD = "video/download"

Result = dict | web.StreamResponse
Handler = Callable[[web.Request, dict], Awaitable[Result]]


class FakeError(Exception):
    """Answered as WeChat's JSON error body."""

    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class _Token:
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass
class _Window:
    opened_at: datetime
    used: int = 0


@dataclass
class _Fault:
    errcode: int | None
    http_status: int | None
    delay_seconds: float
    times: int
    touser: str | None


@dataclass
class Subscription:
    """A resident's consent to one 订阅通知 template: long-term (sends until rejected) and/or one-off grants (one
    send per acceptance)."""

    long_term: bool = False
    grants: int = 0


@dataclass
class _Media:
    content: bytes
    content_type: str
    created_at: datetime


@dataclass
class _VideoLink:
    media_id: str
    expires_at: datetime


@dataclass
class _QRCode:
    url: str
    expires_at: datetime | None  # None: a permanent (LIMIT) code


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _short_path(path: str) -> str:
    """'/cgi-bin/message/custom/send' and 'message/custom/send' name the same endpoint."""
    path = path.strip("/")
    return path.removeprefix("cgi-bin/")


class FakeWeChat:
    def __init__(self, *, app_id: str, app_secret: str, settings: FakeWechatSettings, clock: Clock):
        self.app_id = app_id
        self.app_secret = app_secret
        self.settings = settings
        self.clock = clock
        self._tokens: dict[str, _Token] = {}
        self._latest_token: str | None = None
        self._msgid = 1000
        self.reset()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> FakeWeChat:
        return cls(
            app_id=settings.wechat.app_id,
            app_secret=settings.wechat.app_secret,
            settings=settings.fake_wechat,
            clock=clock,
        )

    def reset(self) -> None:
        """Forget messages, windows, subscriptions, faults and media. Tokens survive so a running bot is not
        disturbed."""
        self.sent: list[dict] = []
        self.calls: Counter[str] = Counter()
        self.menu: dict | None = None
        self.qrcodes: dict[str, str | int] = {}
        self._windows: dict[str, dict[str, _Window]] = {}
        self._unsubscribed: set[str] = set()
        self._subscriptions: dict[str, dict[str, Subscription]] = {}  # openid → template id → consent
        self._faults: dict[str, list[_Fault]] = {}
        self._media: dict[str, _Media] = {}
        self._video_links: dict[str, _VideoLink] = {}  # by vkey
        self._qrcode_images: dict[str, _QRCode] = {}  # by ticket

    # --- Python control surface ---------------------------------------------------------------------------

    def record_inbound(self, openid: str, kind: str) -> None:
        """A resident's message or event reached WeChat: open (or renew) that kind of window."""
        if kind not in INBOUND_KINDS:
            raise ValueError(f"kind must be one of {INBOUND_KINDS}, got {kind!r}")
        if kind == "unsubscribe":
            self._unsubscribed.add(openid)
            self._windows.pop(openid, None)
            return
        self._unsubscribed.discard(openid)
        self._windows.setdefault(openid, {})[kind] = _Window(opened_at=self.clock.now())

    def record_subscription(
        self, openid: str, template_id: str, status: str = "accept", *, one_off: bool = False
    ) -> None:
        """The resident answered a 订阅通知 popup (or changed it in the settings) for `template_id`: "accept" makes a
        long-term subscription, or with `one_off` adds one grant (one bizsend); "reject" removes it, grants and all."""
        if not isinstance(openid, str) or not openid:
            raise ValueError("openid must be a non-empty string")
        if not isinstance(template_id, str) or not template_id:
            raise ValueError("template_id must be a non-empty string")
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"status must be one of {SUBSCRIPTION_STATUSES}, got {status!r}")
        if not isinstance(one_off, bool):
            raise ValueError(f"one_off must be true or false, got {one_off!r}")
        mine = self._subscriptions.setdefault(openid, {})
        if status == "reject":
            mine.pop(template_id, None)
            return
        subscription = mine.setdefault(template_id, Subscription())
        if one_off:
            subscription.grants += 1
        else:
            subscription.long_term = True

    def subscriptions_of(self, openid: str) -> dict[str, Subscription]:
        """The resident's current subscriptions by template id (copies)."""
        mine = self._subscriptions.get(openid, {})
        return {tid: Subscription(s.long_term, s.grants) for tid, s in mine.items()}

    def add_fault(
        self,
        path: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay_seconds: float = 0.0,
        times: int = 1,
        touser: str | None = None,
    ) -> None:
        """Make the next `times` calls of `path` (optionally only those to `touser`) misbehave."""
        if errcode is None and http_status is None and not delay_seconds:
            raise ValueError("a fault needs errcode, http_status or delay_seconds")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(errcode, http_status, float(delay_seconds), int(times), touser)
        self._faults.setdefault(_short_path(path), []).append(fault)

    def add_media(self, media_id: str, content: bytes, content_type: str) -> None:
        self._media[media_id] = _Media(content, content_type, self.clock.now())

    def sent_to(self, openid: str) -> list[dict]:
        return [m for m in self.sent if m["touser"] == openid]

    # --- the application ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        api = {
            ("GET", "token"): (self._token_get, False),
            ("POST", "stable_token"): (self._stable_token, False),
            ("POST", "message/custom/send"): (self._custom_send, True),
            ("POST", "message/template/send"): (self._template_send, True),
            ("POST", "message/subscribe/bizsend"): (self._subscribe_send, True),
            ("GET", "media/get"): (self._media_get, True),
            ("POST", "qrcode/create"): (self._qrcode_create, True),
            ("GET", "showqrcode"): (self._showqrcode, False),  # the ticket is all it takes
            ("POST", "menu/create"): (self._menu_create, True),
        }
        for (method, path), (handler, needs_token) in api.items():
            app.router.add_route(method, f"/cgi-bin/{path}", self._endpoint(path, handler, needs_token))
        video = self._endpoint(VIDEO_DOWNLOAD, self._video_download, False)  # a link: no access token
        app.router.add_get(f"/{VIDEO_DOWNLOAD}/{{media_id}}", video, name="video-download")
        app.router.add_get("/sent", self._ctl_sent)
        app.router.add_post("/inbound", self._ctl_inbound)
        app.router.add_post("/subscriptions", self._ctl_subscriptions)
        app.router.add_post("/faults", self._ctl_faults)
        app.router.add_post("/media", self._ctl_media)
        app.router.add_post("/reset", self._ctl_reset)
        return app

    def _endpoint(self, path: str, handler: Handler, needs_token: bool):
        async def view(request: web.Request) -> web.StreamResponse:
            self.calls[path] += 1
            try:
                body = await _json_body(request) if request.method == "POST" else {}
                fault = self._take_fault(path, body.get("touser"))
                if fault is not None:
                    if fault.delay_seconds:
                        await asyncio.sleep(fault.delay_seconds)
                    if fault.http_status is not None:
                        return web.Response(status=fault.http_status, text="injected fault")
                    if fault.errcode is not None:
                        raise FakeError(fault.errcode, "injected fault")
                if needs_token:
                    self._check_token(request.query.get("access_token"))
                result = await handler(request, body)
            except FakeError as exc:
                result = {"errcode": exc.errcode, "errmsg": exc.errmsg}
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result, dumps=_dumps)

        return view

    def _take_fault(self, path: str, touser: str | None) -> _Fault | None:
        queue = self._faults.get(path, [])
        for fault in queue:
            if fault.touser is None or fault.touser == touser:
                fault.times -= 1
                if fault.times == 0:
                    queue.remove(fault)
                return fault
        return None

    # --- tokens -------------------------------------------------------------------------------------------

    def _check_credentials(self, grant_type: str | None, appid: str | None, secret: str | None) -> None:
        if grant_type != "client_credential":
            raise FakeError(40002, "invalid grant_type")
        if not appid:
            raise FakeError(41002, "appid missing")
        if not secret:
            raise FakeError(41004, "appsecret missing")
        if appid != self.app_id:
            raise FakeError(40013, "invalid appid")
        if secret != self.app_secret:
            raise FakeError(40125, "invalid appsecret")

    def _issue_token(self) -> dict:
        now = self.clock.now()
        for token in self._tokens.values():
            if token.revoked_at is None or token.revoked_at > now + TOKEN_GRACE:
                token.revoked_at = now + TOKEN_GRACE
        value = secrets.token_urlsafe(48)
        self._tokens[value] = _Token(expires_at=now + timedelta(seconds=self.settings.token_ttl_seconds))
        self._latest_token = value
        return {"access_token": value, "expires_in": self.settings.token_ttl_seconds}

    def _token_error(self, value: str) -> FakeError | None:
        token = self._tokens.get(value)
        now = self.clock.now()
        if token is None or (token.revoked_at is not None and now >= token.revoked_at):
            return FakeError(40001, "invalid credential, access_token is invalid or not latest")
        if now >= token.expires_at:
            return FakeError(42001, "access_token expired")
        return None

    def _check_token(self, value: str | None) -> None:
        if not value:
            raise FakeError(41001, "access_token missing")
        error = self._token_error(value)
        if error is not None:
            raise error

    async def _token_get(self, request: web.Request, _body: dict) -> dict:
        q = request.query
        self._check_credentials(q.get("grant_type"), q.get("appid"), q.get("secret"))
        return self._issue_token()

    async def _stable_token(self, _request: web.Request, body: dict) -> dict:
        self._check_credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        latest = self._latest_token
        if not body.get("force_refresh") and latest is not None and self._token_error(latest) is None:
            remaining = self._tokens[latest].expires_at - self.clock.now()
            return {"access_token": latest, "expires_in": int(remaining.total_seconds())}
        return self._issue_token()

    # --- messages -----------------------------------------------------------------------------------------

    def _use_window(self, openid: str) -> None:
        """Spend one customer-service message from an open window, as WeChat counts them."""
        if openid in self._unsubscribed:
            raise FakeError(43004, "require subscribe")
        now = self.clock.now()
        s = self.settings
        limits = {
            "message": (timedelta(hours=s.window_hours), s.window_quota),
            "event": (timedelta(seconds=s.event_window_seconds), s.event_window_quota),
        }
        windows = self._windows.get(openid, {})
        open_windows = [
            (windows[kind], quota)
            for kind, (span, quota) in limits.items()
            if kind in windows and now < windows[kind].opened_at + span
        ]
        if not open_windows:
            raise FakeError(45015, "response out of time limit or subscription is canceled")
        for window, quota in open_windows:
            if window.used < quota:
                window.used += 1
                return
        raise FakeError(45047, "out of response count limit")

    def _record_sent(self, api: str, body: dict, msgtype: str, content: str | None) -> None:
        self.sent.append(
            {
                "api": api,
                "touser": body["touser"],
                "msgtype": msgtype,
                "content": content,
                "payload": body,
                "at": self.clock.now().isoformat(),
            }
        )

    async def _custom_send(self, _request: web.Request, body: dict) -> dict:
        if not isinstance(body.get("touser"), str) or not body["touser"]:
            raise FakeError(40003, "invalid openid")
        msgtype = body.get("msgtype")
        if msgtype not in CUSTOM_MSGTYPES:
            raise FakeError(40008, "invalid message type")
        content = None
        if msgtype == "text":
            content = (body.get("text") or {}).get("content")
            if not isinstance(content, str) or not content:
                raise FakeError(44004, "empty content")
            if len(content.encode("utf-8")) > MAX_TEXT_BYTES:
                raise FakeError(45002, "content size out of limit")
        if msgtype == "msgmenu":
            menu = body.get("msgmenu") or {}
            if not isinstance(menu.get("list"), list) or not menu["list"]:
                raise FakeError(47001, "data format error")
        self._use_window(body["touser"])
        self._record_sent("custom/send", body, msgtype, content)
        return {"errcode": 0, "errmsg": "ok"}

    async def _template_send(self, _request: web.Request, body: dict) -> dict:
        if not isinstance(body.get("touser"), str) or not body["touser"]:
            raise FakeError(40003, "invalid openid")
        if not body.get("template_id"):
            raise FakeError(40037, "invalid template_id")
        if body["touser"] in self._unsubscribed:
            raise FakeError(43004, "require subscribe")
        self._msgid += 1
        self._record_sent("template/send", body, "template", None)
        return {"errcode": 0, "errmsg": "ok", "msgid": self._msgid}

    async def _subscribe_send(self, _request: web.Request, body: dict) -> dict:
        """订阅通知: only to a resident who accepted the template; one-off grants are spent one per message."""
        if not isinstance(body.get("touser"), str) or not body["touser"]:
            raise FakeError(40003, "invalid openid")
        template_id = body.get("template_id")
        if not isinstance(template_id, str) or not template_id:
            raise FakeError(40037, "invalid template_id")
        if body["touser"] in self._unsubscribed:
            raise FakeError(43004, "require subscribe")
        _check_subscribe_data(body.get("data"))
        subscription = self._subscriptions.get(body["touser"], {}).get(template_id)
        if subscription is None or not (subscription.long_term or subscription.grants > 0):
            raise FakeError(43101, "user refuse to accept the msg")
        if not subscription.long_term:
            subscription.grants -= 1
            if subscription.grants == 0:
                del self._subscriptions[body["touser"]][template_id]
        self._msgid += 1
        self._record_sent("subscribe/bizsend", body, "subscribe", None)
        return {"errcode": 0, "errmsg": "ok", "msgid": self._msgid}

    # --- media, QR codes, menu ----------------------------------------------------------------------------

    def _live_media(self, media_id: str) -> _Media | None:
        media = self._media.get(media_id)
        ttl = timedelta(days=self.settings.media_ttl_days)
        if media is None or self.clock.now() >= media.created_at + ttl:
            return None
        return media

    async def _media_get(self, request: web.Request, _body: dict) -> Result:
        media_id = request.query.get("media_id", "")
        media = self._live_media(media_id)
        if media is None:
            raise FakeError(40007, "invalid media_id")
        if media.content_type.lower().startswith("video/"):
            # WeChat answers a video with a temporary download link (no access token needed), not the bytes.
            now = self.clock.now()
            self._video_links = {k: v for k, v in self._video_links.items() if now < v.expires_at}  # bounded
            vkey = secrets.token_urlsafe(24)
            expires_at = now + timedelta(seconds=self.settings.video_link_ttl_seconds)
            self._video_links[vkey] = _VideoLink(media_id, expires_at)
            path = request.app.router["video-download"].url_for(media_id=media_id).with_query(vkey=vkey)
            return {"video_url": str(request.url.join(path))}
        return web.Response(
            body=media.content,
            content_type=media.content_type,
            headers={"Content-Disposition": f'attachment; filename="{media_id}"'},
        )

    async def _video_download(self, request: web.Request, _body: dict) -> Result:
        """A video link handed out by media/get: the bytes while link and media live, else a bare 404 (a
        download host, not the API: no JSON errcode)."""
        media_id = request.match_info["media_id"]
        link = self._video_links.get(request.query.get("vkey", ""))
        media = self._live_media(media_id)
        if link is None or link.media_id != media_id or self.clock.now() >= link.expires_at or media is None:
            return web.Response(status=404, text="link expired or unknown")
        return web.Response(body=media.content, content_type="video/mp4")

    async def _qrcode_create(self, _request: web.Request, body: dict) -> dict:
        action = body.get("action_name")
        if action not in QR_ACTIONS:
            raise FakeError(40052, "invalid action name")
        scene_info = (body.get("action_info") or {}).get("scene") or {}
        scene = scene_info.get("scene_str") if "STR" in action else scene_info.get("scene_id")
        valid = (
            isinstance(scene, str) and 1 <= len(scene) <= 64
            if "STR" in action
            else isinstance(scene, int) and scene > 0 and (action == "QR_SCENE" or scene <= 100000)
        )
        if not valid:
            raise FakeError(40053, "invalid action info")
        # Standard base64 like WeChat's tickets, "+", "/" and "=" included: a client that forgets to escape the
        # ticket in showqrcode's query is caught here rather than in production.
        ticket = "gQ" + base64.b64encode(secrets.token_bytes(40)).decode()
        self.qrcodes[ticket] = scene
        answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(16)}"}
        expires_at = None
        if "LIMIT" not in action:
            answer["expire_seconds"] = min(int(body.get("expire_seconds") or 60), 2592000)
            expires_at = self.clock.now() + timedelta(seconds=answer["expire_seconds"])
        self._qrcode_images[ticket] = _QRCode(answer["url"], expires_at)
        return answer

    async def _showqrcode(self, request: web.Request, _body: dict) -> Result:
        """The QR image of a ticket qrcode/create issued (until a temporary one expires), else a bare 404: an image
        host, not the API."""
        qr = self._qrcode_images.get(request.query.get("ticket", ""))
        if qr is None or (qr.expires_at is not None and self.clock.now() >= qr.expires_at):
            return web.Response(status=404, text="ticket unknown or expired")
        png = io.BytesIO()
        segno.make(qr.url, error="m").save(png, kind="png", scale=8, border=4)
        return web.Response(body=png.getvalue(), content_type="image/png")

    async def _menu_create(self, _request: web.Request, body: dict) -> dict:
        buttons = body.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise FakeError(40016, "invalid button size")
        self.menu = body
        return {"errcode": 0, "errmsg": "ok"}

    # --- control endpoints (not WeChat's) -----------------------------------------------------------------

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        touser = request.query.get("touser")
        sent = self.sent if touser is None else self.sent_to(touser)
        return web.json_response(sent, dumps=_dumps)

    async def _ctl_inbound(self, request: web.Request) -> web.Response:
        body = await _ctl_body(request)
        try:
            self.record_inbound(str(body["openid"]), str(body["kind"]))
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"need openid and kind: {exc}") from None
        return web.json_response({"ok": True})

    async def _ctl_subscriptions(self, request: web.Request) -> web.Response:
        body = await _ctl_body(request)
        try:
            self.record_subscription(
                body["openid"], body["template_id"], body.get("status", "accept"), one_off=body.get("one_off", False)
            )
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"need openid, template_id, status (accept|reject), one_off: {exc}") from None
        return web.json_response({"ok": True})

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        body = await _ctl_body(request)
        names = ("errcode", "http_status", "delay_seconds", "times", "touser")
        options = {name: body[name] for name in names if name in body}
        try:
            self.add_fault(str(body["path"]), **options)
        except (KeyError, ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
        return web.json_response({"ok": True})

    async def _ctl_media(self, request: web.Request) -> web.Response:
        """Store the body as media (the simulator 'uploads' a resident's photo): ?media_id= optional."""
        media_id = request.query.get("media_id") or secrets.token_urlsafe(16)
        self.add_media(media_id, await request.read(), request.content_type)
        return web.json_response({"media_id": media_id})

    async def _ctl_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


async def _json_body(request: web.Request) -> dict:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise FakeError(47001, "data format error") from None
    if not isinstance(body, dict):
        raise FakeError(47001, "data format error")
    return body


async def _ctl_body(request: web.Request) -> dict:
    try:
        return await _json_body(request)
    except FakeError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None


# --- 订阅通知 data values, as WeChat documents their limits ------------------------------------------------------

_ASCII_SYMBOLS = re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d")
_TIME_FORMATS = ("%H:%M", "%H:%M:%S")
_DATETIME_FORMATS = tuple(f"{d} {t}" for d in _DATE_FORMATS for t in _TIME_FORMATS) + tuple(
    f"{d}{t}" for d in ("%Y年%m月%d日",) for t in _TIME_FORMATS
)


def _parses(value: str, formats: tuple[str, ...]) -> bool:
    """`value` in one of `formats`, or a span of two such points joined by "~" (WeChat allows both)."""
    parts = value.split("~")
    if len(parts) > 2:
        return False
    for part in parts:
        for fmt in formats:
            try:
                datetime.strptime(part.strip(), fmt)
                break
            except ValueError:
                continue
        else:
            return False
    return True


def _is_symbols(value: str) -> bool:
    return all(not ch.isalnum() and not ch.isspace() for ch in value)


# The key's type prefix (`thing3` → thing) → is this value acceptable?
SUBSCRIBE_VALUE_RULES: dict[str, Callable[[str], bool]] = {
    "thing": lambda v: len(v) <= 20,
    "character_string": lambda v: len(v) <= 32 and re.fullmatch(f"[0-9A-Za-z{_ASCII_SYMBOLS}]+", v) is not None,
    "phrase": lambda v: len(v) <= 5 and re.fullmatch(r"[\u3400-\u4dbf\u4e00-\u9fff]+", v) is not None,
    "number": lambda v: len(v) <= 32 and re.fullmatch(r"[0-9]+(\.[0-9]+)?", v) is not None,
    "letter": lambda v: len(v) <= 32 and re.fullmatch("[A-Za-z]+", v) is not None,
    "symbol": lambda v: len(v) <= 5 and _is_symbols(v),
    "name": lambda v: len(v) <= 10,
    "phone_number": lambda v: len(v) <= 17 and re.fullmatch(r"[0-9+\-]+", v) is not None,
    "car_number": lambda v: len(v) <= 8,
    "amount": lambda v: re.fullmatch(r"[¥￥]?[0-9]+(\.[0-9]+)?元?", v) is not None,
    "time": lambda v: _parses(v, _DATETIME_FORMATS + _TIME_FORMATS),
    "date": lambda v: _parses(v, _DATE_FORMATS + _DATETIME_FORMATS),
}
_DATA_KEY = re.compile(r"([a-z_]+?)([0-9]+)")


def _check_subscribe_data(data: Any) -> None:
    """Every key a known type prefix plus a number, every value {"value": non-empty string} within its type's
    limits; else 47003 naming the field, as WeChat does."""
    if not isinstance(data, dict) or not data:
        raise FakeError(47003, "argument invalid! data is empty")
    for key, field in data.items():
        match = _DATA_KEY.fullmatch(key)
        rule = SUBSCRIBE_VALUE_RULES.get(match.group(1)) if match else None
        value = field.get("value") if isinstance(field, dict) else None
        if rule is None or not isinstance(value, str) or not value or not rule(value):
            raise FakeError(47003, f"argument invalid! data.{key}.value invalid")
