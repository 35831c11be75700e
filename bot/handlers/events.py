"""WeChat events: follow, unfollow, menu clicks, QR scans. Unhandled events are answered with `success`."""

from __future__ import annotations

from bot.context import Ctx
from bot.handlers import resident
from bot.services import residents
from bot.wechat.inbound import Inbound

# Keys of the custom menu's CLICK buttons (see `frontdoor menu` / config) and what they do.
CLICK_KEYS = {
    "COMPLAINT": resident.start_complaint,
    "MY_CASES": resident.my_cases,
    "HELP": resident.show_help,
}


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
