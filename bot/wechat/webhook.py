"""The `/wechat` endpoint: verify · decrypt · parse · hand to intake · answer within WeChat's deadline.

Every refusal happens before anything is stored: bad signature or stale timestamp 403, anything malformed 400,
an oversized body 413.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from bot import metrics
from bot.config import Settings
from bot.intake import Intake
from bot.wechat import protocol
from bot.wechat.protocol import Crypto, Refused

log = logging.getLogger(__name__)


class Webhook:
    def __init__(self, settings: Settings, intake: Intake, now=time.time):
        self.settings = settings
        self.intake = intake
        self.now = now
        wx = settings.wechat
        self.crypto = Crypto(wx.token, wx.app_id, (wx.encoding_aes_key, wx.previous_encoding_aes_key))

    def routes(self) -> list[web.RouteDef]:
        path = self.settings.webhook.path
        return [web.get(path, self.verify), web.post(path, self.receive)]

    def _check_query(self, request: web.Request) -> tuple[str, str]:
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        protocol.check_signature(q.get("signature"), self.settings.wechat.token, timestamp, nonce)
        protocol.check_timestamp(timestamp, self.settings.webhook.timestamp_window_seconds, self.now())
        return timestamp, nonce

    async def verify(self, request: web.Request) -> web.Response:
        """WeChat's URL verification: echo `echostr` when the signature matches."""
        try:
            self._check_query(request)
        except Refused as exc:
            return _refusal(exc)
        return web.Response(text=request.query.get("echostr", ""))

    async def receive(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            return await self._receive(request, started)
        finally:
            metrics.WEBHOOK_SECONDS.observe(time.monotonic() - started)

    async def _receive(self, request: web.Request, started: float) -> web.Response:
        try:
            timestamp, nonce = self._check_query(request)
            raw = await self._read_capped(request)
            body = protocol.decode_body(raw)
            crypto = None
            if request.query.get("encrypt_type", "raw").lower() == "aes":
                body, crypto = self.crypto.decrypt(body, request.query.get("msg_signature"), timestamp, nonce)
            elif self.settings.wechat.encryption_mode == "safe":
                # A plain request's signature covers only token, timestamp and nonce — never the body.
                raise Refused(403, "encryption required (safe mode)")
            msg, account = protocol.parse(body)
        except Refused as exc:
            return _refusal(exc)
        budget = self.settings.webhook.reply_budget_seconds - (time.monotonic() - started)
        text = await self.intake.process(msg, budget)
        if text is None:
            return web.Response(text="success")
        xml = protocol.render_text_reply(msg.openid, account, text, int(self.now()))
        if crypto is not None:
            xml = crypto.encrypt_message(xml, nonce, timestamp)
        return web.Response(text=xml, content_type="application/xml")

    async def _read_capped(self, request: web.Request) -> bytes:
        limit = self.settings.webhook.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, "body too large")
        parts: list[bytes] = []
        size = 0
        # A body can arrive in several TCP segments: read to the end, never past the cap.
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise Refused(413, "body too large")
            parts.append(chunk)
        return b"".join(parts)


def _refusal(exc: Refused) -> web.Response:
    log.info("refused webhook request: %s", exc.reason)
    return web.Response(status=exc.status, text=exc.reason)
