"""`frontdoor menu push`: publish the custom menu whose CLICK keys the bot understands."""

from __future__ import annotations

import aiohttp

from bot.app import api_base_url
from bot.clock import Clock
from bot.config import Settings
from bot.handlers.events import MENU
from bot.texts import Texts
from bot.wechat.api import WeChatAPI, WeChatAPIError


def menu_definition(texts: Texts) -> dict:
    return {"button": [{"type": "click", "name": texts(name), "key": key} for key, name, _action in MENU]}


async def push_menu(settings: Settings, texts: Texts, *, api_base: str | None = None) -> int:
    menu = menu_definition(texts)
    async with aiohttp.ClientSession() as http:
        api = WeChatAPI.from_settings(http, settings.wechat, Clock(), base_url=api_base or api_base_url(settings))
        try:
            await api.create_menu(menu)
        except (WeChatAPIError, aiohttp.ClientError) as exc:
            print(texts("cli.menu_failed", error=exc))
            return 1
    print(texts("cli.menu_pushed", buttons=" / ".join(b["name"] for b in menu["button"])))
    return 0
