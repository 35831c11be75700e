"""The baseline: the least any WeChat safe-mode server must do, with nothing of frontdoor in it.

aiohttp + wechatpy: check the URL signature, verify `msg_signature` and decrypt with `WeChatCrypto`, parse with
`wechatpy.parse_message`, answer an encrypted `TextReply` echoing the text. No database, no dialog.

    .venv/bin/python -m bench.echo_server --port 8090
"""

from __future__ import annotations

import argparse

from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.config import Settings


def build_app(settings: Settings) -> web.Application:
    wx = settings.wechat
    crypto = WeChatCrypto(wx.token, wx.encoding_aes_key, wx.app_id)

    async def receive(request: web.Request) -> web.Response:
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        try:
            check_signature(wx.token, q.get("signature", ""), timestamp, nonce)
            xml = crypto.decrypt_message(await request.text(), q.get("msg_signature", ""), timestamp, nonce)
        except InvalidSignatureException:
            return web.Response(status=403, text="bad signature")
        msg = parse_message(xml)
        content = getattr(msg, "content", None) or msg.type
        reply = TextReply(message=msg, content=content).render()
        return web.Response(text=crypto.encrypt_message(reply, nonce, timestamp), content_type="application/xml")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.post(settings.webhook.path, receive), web.get("/healthz", healthz)])
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    args = p.parse_args()
    web.run_app(build_app(Settings()), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
