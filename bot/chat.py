"""`frontdoor chat`: talk to a running frontdoor as a resident, through a simulated WeChat server.

Lines you type are text messages. A few slash commands send the other kinds:
  /photo            a photo            /voice 文字      a voice message recognised as 文字
  /video            a video
  /location 地点     a location        /follow          the subscribe event
  /click KEY        a menu click (COMPLAINT, MY_CASES, HELP)          /quit
  /subscribe TEMPLATE_ID [reject]   accept (or reject) a 订阅通知 template in its popup
  /scan grid:CODE   scan a grid's poster (as a follower; /scan-new for a newcomer's follow)
  /tap N            tap option N of the last pushed message with options (a poll)
Passive replies print after "公众号："; pushed (customer-service) messages after "推送：".
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp

from bot.app import FAKE_PREFIX, local_base_url
from bot.config import Settings
from bot.texts import Texts
from bot.wechat.simulator import Resident, WeChatServer


async def _read_line(prompt: str) -> str | None:
    print(prompt, end="", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.rstrip("\n") if line else None


async def _pushed_since(http: aiohttp.ClientSession, fake_url: str, openid: str, seen: int) -> tuple[list, int]:
    try:
        async with http.get(f"{fake_url}/sent", params={"touser": openid}) as resp:
            sent = await resp.json()
    except (aiohttp.ClientError, ValueError):
        return [], seen
    return sent[seen:], len(sent)


SUBSCRIBE_USAGE = "/subscribe TEMPLATE_ID [reject]"
# The options of the last message with tappable options (msgmenu) pushed to this resident: (id, content).
_last_menu: list[tuple[str, str]] = []


def _menu_text(menu: dict) -> str:
    """A pushed msgmenu as the resident sees it: the head, the tappable options (/tap N), the tail."""
    _last_menu[:] = [(str(o.get("id")), str(o.get("content"))) for o in menu.get("list") or []]
    options = [f"  [/tap {n}] {content}" for n, (_id, content) in enumerate(_last_menu, 1)]
    return "\n".join([menu.get("head_content", ""), *options, menu.get("tail_content", "")])


async def _send(resident: Resident, line: str) -> str | None:
    cmd, _, rest = line.partition(" ")
    if cmd == "/photo":
        return await resident.photo(f"media_{uuid.uuid4().hex[:12]}")
    if cmd == "/video":
        return await resident.video(f"video_{uuid.uuid4().hex[:12]}")
    if cmd == "/voice":
        return await resident.voice(f"voice_{uuid.uuid4().hex[:12]}", rest or None)
    if cmd == "/location":
        return await resident.location(26.6470, 106.6302, rest or "贵阳市云岩区")
    if cmd == "/follow":
        return await resident.event("subscribe")
    if cmd == "/click":
        return await resident.event("CLICK", rest or "COMPLAINT")
    if cmd in ("/scan", "/scan-new"):
        return await resident.scan(rest.strip() or "grid:G1", following=cmd == "/scan")
    if cmd == "/tap":
        number = rest.strip()
        if not number.isdigit() or not 1 <= int(number) <= len(_last_menu):
            print(f"/tap 1–{len(_last_menu)}" if _last_menu else "no message with options yet")
            return None
        menu_id, content = _last_menu[int(number) - 1]
        return await resident.tap(menu_id, content)
    if cmd == "/subscribe":
        args = rest.split()
        if len(args) not in (1, 2) or args[1:] not in ([], ["reject"]):
            print(SUBSCRIBE_USAGE)
            return None
        return await resident.subscribe({args[0]: "reject" if args[1:] else "accept"})
    return await resident.say(line)


async def run_chat(settings: Settings, texts: Texts, *, url: str | None, openid: str, mode: str | None) -> int:
    base = (url or local_base_url(settings)).rstrip("/")
    webhook = base + settings.webhook.path
    fake_url = base + FAKE_PREFIX if settings.wechat.fake_api else None
    wx = settings.wechat
    server = WeChatServer(
        wx.token, wx.app_id, wx.encoding_aes_key, mode or ("safe" if wx.encoding_aes_key else "plain")
    )
    mode_name = texts(f"cli.mode_{server.mode}")
    print(texts("cli.chat_intro", openid=openid, webhook=webhook, mode=mode_name))
    async with aiohttp.ClientSession() as http:
        resident = Resident(server, http, webhook, openid, fake_url)
        watcher = asyncio.create_task(_watch_pushes(http, fake_url, openid, texts)) if fake_url else None
        while (line := await _read_line(texts("cli.chat_me"))) is not None:
            if line.strip() == "/quit":
                break
            if not line.strip():
                continue
            try:
                reply = await _send(resident, line.strip())
            except aiohttp.ClientError as exc:
                print(texts("cli.chat_unreachable", error=exc))
                continue
            if reply:
                print(texts("cli.chat_reply", text=reply) + "\n")
        if watcher is not None:
            # Pushes still on their way (continuations wait a moment, then the outbox tick sends them).
            await asyncio.sleep(PUSH_GRACE_SECONDS)
            watcher.cancel()
    return 0


PUSH_GRACE_SECONDS = 4.0


async def _watch_pushes(http: aiohttp.ClientSession, fake_url: str, openid: str, texts: Texts) -> None:
    """Print customer-service messages sent to this resident as they arrive, beside the typed dialog."""
    _, seen = await _pushed_since(http, fake_url, openid, 0)
    while True:
        await asyncio.sleep(0.5)
        pushed, seen = await _pushed_since(http, fake_url, openid, seen)
        for item in pushed:
            menu = (item.get("payload") or {}).get("msgmenu")
            text = _menu_text(menu) if menu else item.get("content") or item.get("payload")
            print("\n" + texts("cli.chat_pushed", text=text) + "\n")
