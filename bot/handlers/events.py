"""WeChat events: follow, unfollow, menu clicks, QR scans. Unhandled events are answered with `success`."""

from __future__ import annotations

from bot.context import Ctx
from bot.handlers import resident
from bot.services import residents
from bot.wechat.inbound import Inbound

# The custom menu's CLICK buttons: key, the text key of the button's name, and what a click does.
# `frontdoor menu push` publishes exactly these, so the menu and the bot cannot disagree.
MENU = (
    ("COMPLAINT", "menu.complaint", resident.start_complaint),
    ("MY_CASES", "menu.my_cases", resident.my_cases),
    ("HELP", "menu.help", resident.show_help),
)
CLICK_KEYS = {key: action for key, _name, action in MENU}


async def handle(ctx: Ctx, msg: Inbound) -> str | None:
    now = ctx.clock.now()
    if msg.event in ("subscribe", "subscribe_scan"):
        await residents.set_subscribed(ctx.tx, msg.openid, True, now)
        return ctx.texts("common.welcome", help=resident.help_text(ctx))
    if msg.event == "unsubscribe":
        await residents.set_subscribed(ctx.tx, msg.openid, False, now)
        return None
    await residents.seen(ctx.tx, msg.openid, now, interaction=msg.is_interaction)
    if msg.event == "click" and (action := CLICK_KEYS.get(msg.event_key or "")):
        return await action(ctx)
    # SCAN, LOCATION, VIEW, TEMPLATESENDJOBFINISH, subscription-message events …: nothing to say.
    return None
