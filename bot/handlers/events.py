"""WeChat events: follow, unfollow, menu clicks, QR scans. Unhandled events are answered with `success`."""

from __future__ import annotations

from bot import metrics
from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.handlers import resident
from bot.services import areas, drafts, forget, polls, residents, subscriptions
from bot.wechat.inbound import Inbound

# The custom menu's CLICK buttons: key, the text key of the button's name, and what a click does.
# `frontdoor menu push` publishes exactly these, so the menu and the bot cannot disagree.
MENU = (
    ("COMPLAINT", "menu.complaint", resident.start_complaint),
    ("MY_CASES", "menu.my_cases", resident.my_cases),
    ("HELP", "menu.help", resident.show_help),
)
CLICK_KEYS = {key: action for key, _name, action in MENU}


async def _with_reminder(ctx: Ctx, reply: str) -> str:
    state = await drafts.get(ctx.tx, ctx.openid)
    if state is None or not state.data:
        return reply
    return "\n\n".join([reply, ENGINE.reminder(ctx, state)])


async def _join_by_poster(ctx: Ctx, msg: Inbound) -> str | None:
    """A grid poster's QR code (scene grid:<code>) makes the resident one of that grid's: what to tell them."""
    code = areas.code_from_scene(msg.event_key)
    if code is None:
        return None
    grid = await areas.by_code(ctx.tx, code)
    if grid is None or grid.level != "grid":
        return ctx.texts("grid.poster_unknown")
    changed = await areas.join(ctx.tx, msg.openid, grid, ctx.clock.now())
    reply = ctx.texts("grid.joined" if changed else "grid.already", path=grid.path)
    if open_polls := await polls.open_for(ctx.tx, msg.openid, now=ctx.clock.now()):
        reply += "\n\n" + ctx.texts("poll.waiting", count=len(open_polls))
    return reply


async def handle(ctx: Ctx, msg: Inbound) -> str | None:
    now = ctx.clock.now()
    if msg.event in ("subscribe", "subscribe_scan"):
        await residents.set_subscribed(ctx.tx, msg.openid, True, now)
        welcome = ctx.texts("common.welcome", help=resident.help_text(ctx))
        if msg.event == "subscribe_scan" and (joined := await _join_by_poster(ctx, msg)):
            welcome = "\n\n".join([joined, welcome])
        return await _with_reminder(ctx, welcome)
    if msg.event == "unsubscribe":
        # WeChat asks that a person's data go when they leave; the law requires the case records to stay. So
        # they are detached (bot/services/forget.py, README "Personal data and unfollowing"), and this event
        # itself is stored under no name (a retry finds nothing left to detach).
        state = await drafts.get(ctx.tx, msg.openid)
        await forget.forget_resident(ctx.tx, msg.openid, now, reason="unfollow", texts=ctx.texts)
        ctx.forgotten = True
        if state is not None:  # the draft went with them
            metrics.when_committed(metrics.DIALOGS_ABANDONED.labels(state.dialog, "unsubscribed").inc)
        return None
    # A click or a scan opens only the short event window (a follow is recorded above).
    await residents.seen(ctx.tx, msg.openid, now, interaction=msg.is_interaction, kind="event")
    if msg.subscriptions:
        # 订阅通知: what the resident chose for each template decides whether notices may go as one.
        choices = [(c.template_id, c.status, c.source) for c in msg.subscriptions]
        await subscriptions.record(ctx.tx, msg.openid, choices, now, one_off=ctx.settings.push.subscribe_one_off)
        return None
    if msg.event == "scan" and (joined := await _join_by_poster(ctx, msg)):
        return await _with_reminder(ctx, joined)
    if msg.event == "click" and (action := CLICK_KEYS.get(msg.event_key or "")):
        reply = await action(ctx)
        # Looking something up from the menu mid-dialog: say where they were (starting again offers the draft).
        return reply if action is resident.start_complaint else await _with_reminder(ctx, reply)
    # SCAN, LOCATION, VIEW, TEMPLATESENDJOBFINISH …: nothing to say.
    return None
