"""The async outbound WeChat API client (aiohttp).

wechatpy's client is synchronous, ignores timeouts when fetching the token and retries a rejected token
without bound (see shared/WECHAT.md), so outbound calls are made here: every request has a timeout, transport
failures are retried a bounded number of times, and a rejected token is refreshed once and the call retried
once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from yarl import URL

from bot import metrics
from bot.clock import Clock
from bot.config import WechatSettings
from storage.db import Database
from storage.models import WechatToken

log = logging.getLogger(__name__)

# -1 "system busy" (also used here for timeouts, connection errors and HTTP 5xx) and 45011 "per-minute quota"
# go away by themselves (`retryable`; -1 is also retried within the call). Everything else is raised as it
# comes; the outbox decides for itself which errors are worth another try later (see bot/notify.py).
RETRYABLE_ERRCODES = frozenset({-1, 45011})
# The token was rejected (invalid, not the latest, expired): a fresh token may fix the call.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# Refresh this long before WeChat's expiry so a token never dies in flight.
TOKEN_MARGIN_SECONDS = 300
# Not WeChat's: an HTTP 4xx without a JSON answer (a wrong base URL, a proxy's page). Not retried in the call.
HTTP_ERRCODE = -2
# Not WeChat's either: a video's temporary download link (media/get's `video_url`) was refused — expired, or an
# HTTP 4xx — or media/get gave no usable link. Not retried in the call (the same link will not come back to
# life); a later try asks media/get again, which hands out a fresh link while the media lives (3 days).
VIDEO_LINK_ERRCODE = -3
# Not WeChat's: showqrcode answered something other than an image. Not retried in the call.
QRCODE_IMAGE_ERRCODE = -4
# WeChat's QR images come from another host than the API (mp.weixin.qq.com), by ticket, without an access token.
QRCODE_IMAGE_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode"


# While another instance refreshes the shared token, wait for it this many times at most (pauses doubling from
# TOKEN_WAIT_FIRST_SECONDS), then give up with a retryable -1: never an unbounded wait.
TOKEN_WAIT_ROUNDS = 12
TOKEN_WAIT_FIRST_SECONDS = 0.02
TOKEN_WAIT_MAX_SECONDS = 1.0


@dataclass(frozen=True)
class StoredToken:
    token: str
    refresh_after: datetime  # refreshed from then on …
    expires_at: datetime  # … and usable until then


class TokenStore(Protocol):
    """Where every instance reads the account's access token; one instance at a time holds the refresh lease."""

    async def load(self) -> StoredToken | None: ...

    async def acquire(self, owner: str, now: datetime, until: datetime) -> bool: ...

    async def save(self, owner: str, token: StoredToken, now: datetime) -> None: ...

    async def release(self, owner: str) -> None: ...


class DatabaseTokenStore:
    """The token as one row of `wechat_tokens` per AppID. The lease is taken with one conditional UPDATE
    (`WHERE lease_until IS NULL OR lease_until <= now RETURNING`): only one instance wins it."""

    def __init__(self, db: Database, app_id: str):
        self.db = db
        self.app_id = app_id

    async def load(self) -> StoredToken | None:
        t = WechatToken
        query = select(t.access_token, t.refresh_after, t.expires_at).where(t.app_id == self.app_id)
        async with self.db.read() as session:
            row = (await session.execute(query)).first()
        if row is None or not row.access_token or row.refresh_after is None or row.expires_at is None:
            return None
        return StoredToken(row.access_token, row.refresh_after, row.expires_at)

    async def acquire(self, owner: str, now: datetime, until: datetime) -> bool:
        t = WechatToken
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        take = (
            update(t)
            .where(t.app_id == self.app_id, or_(t.lease_until.is_(None), t.lease_until <= now))
            .values(lease_owner=owner, lease_until=until)
            .returning(t.app_id)
        )
        async with self.db.write() as session:
            await session.execute(insert(t).values(app_id=self.app_id, updated_at=now).on_conflict_do_nothing())
            return (await session.execute(take)).first() is not None

    async def save(self, owner: str, token: StoredToken, now: datetime) -> None:
        t = WechatToken
        async with self.db.write() as session:
            await session.execute(
                update(t)
                .where(t.app_id == self.app_id, t.lease_owner == owner)
                .values(
                    access_token=token.token,
                    refresh_after=token.refresh_after,
                    expires_at=token.expires_at,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )

    async def release(self, owner: str) -> None:
        t = WechatToken
        async with self.db.write() as session:
            mine = update(t).where(t.app_id == self.app_id, t.lease_owner == owner)
            await session.execute(mine.values(lease_owner=None, lease_until=None))


class WeChatAPIError(Exception):
    def __init__(self, errcode: int, errmsg: str):
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    @property
    def retryable(self) -> bool:
        return self.errcode in RETRYABLE_ERRCODES


def _dumps(body: Any) -> str:
    # WeChat shows \uXXXX escapes literally: Chinese must go out as UTF-8.
    return json.dumps(body, ensure_ascii=False)


class WeChatAPI:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        timeout: float = 5.0,
        max_retries: int = 2,
        backoff_base: float = 0.2,
        clock: Clock | None = None,
        token_store: TokenStore | None = None,
        owner: str = "frontdoor",
        token_lease_seconds: float = 60.0,
        qrcode_image_url: str = QRCODE_IMAGE_URL,
    ):
        """Without `token_store` the token lives in this object alone (tests, one-off commands); with one, every
        instance reads the shared token and only the holder of the store's lease fetches a new one."""
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.app_secret = app_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.clock = clock or Clock()
        self._token: str | None = None
        self._token_good_until: datetime | None = None
        self._token_expires_at: datetime | None = None
        self._token_lock = asyncio.Lock()
        self.token_store = token_store
        self.owner = owner
        self.token_lease_seconds = token_lease_seconds
        self.qrcode_image_url = qrcode_image_url

    @classmethod
    def from_settings(
        cls,
        http: aiohttp.ClientSession,
        wechat: WechatSettings,
        clock: Clock,
        *,
        base_url: str | None = None,
        token_store: TokenStore | None = None,
        owner: str = "frontdoor",
        token_lease_seconds: float = 60.0,
        qrcode_image_url: str | None = None,
    ) -> WeChatAPI:
        """`base_url` overrides wechat.api_base_url (the app passes its own /fake-wechat URL in fake mode), and
        `qrcode_image_url` wechat.qrcode_image_url likewise (bot.app.qrcode_image_base)."""
        return cls(
            http,
            qrcode_image_url=qrcode_image_url or wechat.qrcode_image_url,
            token_store=token_store,
            owner=owner,
            token_lease_seconds=token_lease_seconds,
            base_url=base_url or wechat.api_base_url,
            app_id=wechat.app_id,
            app_secret=wechat.app_secret,
            timeout=wechat.api_timeout_seconds,
            max_retries=wechat.api_max_retries,
            clock=clock,
        )

    # --- access token -------------------------------------------------------------------------------------

    def _token_valid(self) -> bool:
        return self._token is not None and self.clock.now() < self._token_good_until

    async def access_token(self) -> str:
        if self._token_valid():
            return self._token  # type: ignore[return-value]
        async with self._token_lock:
            # Whoever held the lock before us may have fetched one already.
            if not self._token_valid():
                await self._obtain_token(rejected=None)
            return self._token  # type: ignore[return-value]

    async def _refresh_rejected(self, rejected: str) -> str:
        """A fresh token after WeChat rejected `rejected`; concurrent callers share one refresh."""
        async with self._token_lock:
            if self._token != rejected and self._token_valid():
                return self._token  # type: ignore[return-value]
            await self._obtain_token(rejected=rejected)
            return self._token  # type: ignore[return-value]

    async def _obtain_token(self, *, rejected: str | None) -> None:
        if self.token_store is None:
            await self._fetch_token(force_refresh=rejected is not None)
        else:
            await self._shared_token(self.token_store, rejected)

    def _adopt(self, stored: StoredToken, good_until: datetime | None = None) -> None:
        self._token = stored.token
        self._token_good_until = good_until or stored.refresh_after

    async def _shared_token(self, store: TokenStore, rejected: str | None) -> None:
        """Take the shared token from the store; fetch a new one only while holding the store's lease. Bounded:
        after TOKEN_WAIT_ROUNDS looks a retryable -1 is raised (the outbox retries the row later)."""
        pause = TOKEN_WAIT_FIRST_SECONDS
        for _round in range(TOKEN_WAIT_ROUNDS):
            now = self.clock.now()
            stored = await store.load()
            usable = stored is not None and stored.token != rejected and now < stored.expires_at
            if usable and now < stored.refresh_after:  # type: ignore[union-attr]
                self._adopt(stored)  # type: ignore[arg-type]
                return
            lease_until = now + timedelta(seconds=self.token_lease_seconds)
            if await store.acquire(self.owner, now, lease_until):
                await self._refresh_shared(store, rejected)
                return
            if usable:
                # Another instance is refreshing; the current token still works a while: use it, look again soon.
                self._adopt(stored, min(stored.expires_at, now + timedelta(seconds=5)))  # type: ignore[arg-type]
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, TOKEN_WAIT_MAX_SECONDS)
        raise WeChatAPIError(-1, "access token: another instance is refreshing it; not ready yet")

    async def _refresh_shared(self, store: TokenStore, rejected: str | None) -> None:
        saved = False
        try:
            now = self.clock.now()
            # Someone may have stored a fresh token between our look and our lease.
            stored = await store.load()
            if stored is not None and stored.token != rejected and now < stored.refresh_after:
                self._adopt(stored)
                return
            force = rejected is not None and (stored is None or stored.token == rejected)
            await self._fetch_token(force_refresh=force)
            fresh = StoredToken(
                self._token,  # type: ignore[arg-type]
                self._token_good_until,  # type: ignore[arg-type]
                self._token_expires_at,  # type: ignore[arg-type]
            )
            await store.save(self.owner, fresh, self.clock.now())
            saved = True
        finally:
            if not saved:
                await store.release(self.owner)

    async def _fetch_token(self, *, force_refresh: bool) -> None:
        # stable_token, unlike cgi-bin/token, does not rotate a still-valid token that another instance uses.
        body = {
            "grant_type": "client_credential",
            "appid": self.app_id,
            "secret": self.app_secret,
            "force_refresh": force_refresh,
        }
        try:
            data = await self._request("POST", "cgi-bin/stable_token", params={}, body=body)
            expires_in = int(data["expires_in"])
        except Exception:
            metrics.TOKEN_REFRESHES.labels("error").inc()
            raise
        metrics.TOKEN_REFRESHES.labels("ok").inc()
        # A short-lived token (a test setting) still gets half its life rather than none.
        keep = max(expires_in - TOKEN_MARGIN_SECONDS, expires_in // 2)
        now = self.clock.now()
        self._token = data["access_token"]
        self._token_good_until = now + timedelta(seconds=keep)
        self._token_expires_at = now + timedelta(seconds=expires_in)
        log.info("wechat access token fetched", extra={"force_refresh": force_refresh, "expires_in": expires_in})

    # --- transport ----------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, params: dict, body: Any = None, raw: bool = False, url: str | None = None
    ) -> Any:
        """One API exchange, retried on transport failure and -1 with exponential backoff. `url`: an absolute URL
        to call instead of the API's base URL + `path` (which then only names it in logs and errors)."""
        for attempt in range(self.max_retries + 1):
            try:
                return await self._request_once(method, path, params=params, body=body, raw=raw, url=url)
            except WeChatAPIError as exc:
                if exc.errcode != -1 or attempt == self.max_retries:
                    raise
                log.warning("wechat %s failed (%s); retrying", path, exc)
                await asyncio.sleep(self.backoff_base * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(
        self, method: str, path: str, *, params: dict, body: Any, raw: bool, url: str | None = None
    ) -> Any:
        # An absolute URL (a video's download link) goes out exactly as WeChat gave it: its query is signed.
        target: str | URL = URL(url, encoded=True) if url else f"{self.base_url}/{path}"
        kwargs: dict[str, Any] = {"params": params, "timeout": self.timeout}
        if body is not None:
            kwargs["data"] = _dumps(body).encode()
            kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        try:
            async with self.http.request(method, target, **kwargs) as resp:
                if resp.status >= 500:
                    raise WeChatAPIError(-1, f"HTTP {resp.status} from {path}")
                status = resp.status
                content = await resp.read()
                content_type = resp.headers.get("Content-Type", "")
        except TimeoutError:
            raise WeChatAPIError(-1, f"timeout after {self.timeout.total}s calling {path}") from None
        except aiohttp.ClientError as exc:
            # aiohttp's messages may quote the URL (a redirect's too): never its query, which may carry credentials.
            raise WeChatAPIError(-1, f"{type(exc).__name__} calling {path}: {_without_query(str(exc))}") from None
        if raw and status < 400 and not _looks_like_json(content_type, content):
            # (a 4xx page is never taken for the media's bytes)
            return content, content_type.split(";")[0].strip()
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            # A 4xx page (wrong base URL, a proxy) will not fix itself; a garbled 200 might.
            errcode = HTTP_ERRCODE if status >= 400 else -1
            raise WeChatAPIError(errcode, f"unreadable answer from {path} (HTTP {status})") from None
        errcode = data.get("errcode", 0) if isinstance(data, dict) else 0
        if errcode:
            raise WeChatAPIError(int(errcode), str(data.get("errmsg", "")))
        if raw:
            # media/get answers a video as JSON (its download URL) rather than as bytes: see get_media.
            return content, content_type.split(";")[0].strip()
        return data

    async def _call(
        self, method: str, path: str, *, body: Any = None, params: dict | None = None, raw: bool = False
    ) -> Any:
        token = await self.access_token()
        try:
            return await self._request(
                method, path, params={**(params or {}), "access_token": token}, body=body, raw=raw
            )
        except WeChatAPIError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            log.warning("wechat rejected the access token (%s); refreshing once", exc)
        # Exactly one refresh and one retry: a second rejection is raised, never looped on.
        token = await self._refresh_rejected(token)
        return await self._request(method, path, params={**(params or {}), "access_token": token}, body=body, raw=raw)

    # --- API methods --------------------------------------------------------------------------------------

    async def send_text(self, openid: str, content: str) -> dict:
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        return await self._call("POST", "cgi-bin/message/custom/send", body=body)

    async def send_menu(self, openid: str, head: str, options: list[tuple[str, str]], tail: str) -> dict:
        """A customer-service message with tappable options; tapping one sends its content back as text."""
        body = {
            "touser": openid,
            "msgtype": "msgmenu",
            "msgmenu": {
                "head_content": head,
                "list": [{"id": option_id, "content": content} for option_id, content in options],
                "tail_content": tail,
            },
        }
        return await self._call("POST", "cgi-bin/message/custom/send", body=body)

    async def send_template(self, openid: str, template_id: str, data: dict, url: str | None = None) -> dict:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        return await self._call("POST", "cgi-bin/message/template/send", body=body)

    async def send_subscribe(
        self, openid: str, template_id: str, data: dict[str, dict[str, str]], page: str | None = None
    ) -> dict:
        """A 订阅通知 (`data` as {"thing3": {"value": "…"}, …}); `page`: the web page it opens. WeChat refuses it with
        43101 unless the resident accepted `template_id` (long-term, or a one-off grant not yet spent)."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if page:
            body["page"] = page
        return await self._call("POST", "cgi-bin/message/subscribe/bizsend", body=body)

    async def get_media(self, media_id: str) -> tuple[bytes, str]:
        """The media's bytes and content type; WeChat answers a JSON errcode when it is unknown or expired.

        For a video WeChat answers `{"video_url": "http://…"}`, a temporary download link: its bytes are fetched
        here (same session, timeout and bounded retries on transport errors and 5xx; no access token), so what
        comes back is always the media itself, never the JSON. A refused or expired link raises
        VIDEO_LINK_ERRCODE."""
        content, content_type = await self._call("GET", "cgi-bin/media/get", params={"media_id": media_id}, raw=True)
        if not _looks_like_json(content_type, content):
            return content, content_type
        return await self._download_video(_video_url(content))

    async def _download_video(self, url: str) -> tuple[bytes, str]:
        label = f"the video link at {_without_query(url)}"
        try:
            content, content_type = await self._request("GET", label, params={}, raw=True, url=url)
        except WeChatAPIError as exc:
            if exc.errcode != HTTP_ERRCODE:
                raise
            # A 4xx from the link is no configuration error of ours: the link expired or was refused.
            raise WeChatAPIError(VIDEO_LINK_ERRCODE, f"{exc.errmsg}: expired or refused") from None
        if _looks_like_json(content_type, content):
            raise WeChatAPIError(VIDEO_LINK_ERRCODE, f"{label} answered JSON, not a video")
        return content, content_type

    async def create_qrcode(self, scene: str | int, expire_seconds: int | None = None) -> dict:
        """A parametric QR code; without `expire_seconds` a permanent one (WeChat caps how many exist)."""
        if isinstance(scene, str):
            action = "QR_STR_SCENE" if expire_seconds else "QR_LIMIT_STR_SCENE"
            scene_info: dict[str, Any] = {"scene_str": scene}
        else:
            action = "QR_SCENE" if expire_seconds else "QR_LIMIT_SCENE"
            scene_info = {"scene_id": scene}
        body: dict[str, Any] = {"action_name": action, "action_info": {"scene": scene_info}}
        if expire_seconds:
            body["expire_seconds"] = expire_seconds
        return await self._call("POST", "cgi-bin/qrcode/create", body=body)

    async def qrcode_image(self, ticket: str) -> tuple[bytes, str]:
        """The image of the QR code create_qrcode gave `ticket` for, and its content type (WeChat's is a JPEG, the
        fake's a PNG). Same session, timeout and bounded retries as the API; no access token: the ticket is all
        it takes."""
        # Tickets are base64: "+", "/" and "=" must go out escaped, and the URL exactly as built.
        sep = "&" if "?" in self.qrcode_image_url else "?"
        url = f"{self.qrcode_image_url}{sep}ticket={quote(ticket, safe='')}"
        content, content_type = await self._request("GET", "showqrcode", params={}, raw=True, url=url)
        if not content_type.lower().startswith("image/"):
            raise WeChatAPIError(QRCODE_IMAGE_ERRCODE, f"showqrcode answered {content_type or 'no type'}, not an image")
        return content, content_type.lower()

    async def create_menu(self, menu: dict) -> dict:
        return await self._call("POST", "cgi-bin/menu/create", body=menu)


def _video_url(content: bytes) -> str:
    """The download link of media/get's JSON answer for a video."""
    try:
        url = json.loads(content).get("video_url")
    except (ValueError, UnicodeDecodeError, AttributeError):
        url = None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise WeChatAPIError(VIDEO_LINK_ERRCODE, "media/get answered JSON without a usable video_url")
    return url


_QUERY = re.compile(r"\?[^\s'\"<>]*")


def _without_query(text: str) -> str:
    """`text` with every URL query cut out (a download link's query may carry credentials)."""
    return _QUERY.sub("?…", text)


def _looks_like_json(content_type: str, content: bytes) -> bool:
    # Errors from media/get come as JSON, sometimes labelled text/plain.
    ctype = content_type.split(";")[0].strip().lower()
    return ctype in ("application/json", "text/plain") and content.lstrip().startswith(b"{")
