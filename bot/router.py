"""Who is speaking and what they are in the middle of: events, a tapped poll option, an open dialog, a grid
worker's command, or a resident's."""

from __future__ import annotations

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import words
from bot.handlers import events, gridworker, resident
from bot.handlers import polls as poll_handler
from bot.services import drafts, polls, residents
from bot.wechat.inbound import Inbound


async def route(ctx: Ctx, msg: Inbound) -> str | None:
    if msg.kind == "event":
        return await events.handle(ctx, msg)
    me = await residents.seen(ctx.tx, msg.openid, ctx.clock.now(), interaction=True)
    reply = await _route(ctx, msg, me)
    if me.polls_waiting and reply:
        # Polls put to them while WeChat would not let us write: mentioned once, on their next message.
        if count := await polls.take_waiting(ctx.tx, msg.openid, now=ctx.clock.now()):
            reply = "\n\n".join([reply, ctx.texts("poll.waiting", count=count)])
    return reply


async def _route(ctx: Ctx, msg: Inbound, me: residents.Seen) -> str | None:
    state = await drafts.get(ctx.tx, msg.openid)
    if (tap := polls.from_menu_id(msg.menu_id)) is not None:
        # A tapped option names its poll exactly, whatever else the resident is in the middle of.
        reply = await poll_handler.tapped(ctx, *tap)
        after = await drafts.get(ctx.tx, msg.openid)
        # Where they were, if they were in a dialog the tap left alone (one it started or changed is in the reply).
        if state is None or after is None or (after.dialog, after.data) != (state.dialog, state.data):
            return reply
        return "\n\n".join([reply, ENGINE.reminder(ctx, after)])
    if state is not None:
        word = words(msg)
        if resident.is_lookup(ctx, word):
            # Asking about their cases must not cost the resident their place in the dialog.
            return "\n\n".join([await resident.lookup(ctx, word), ENGINE.reminder(ctx, state)])
        return await ENGINE.handle(ctx, state, msg)
    word = words(msg)
    code = resident.after(ctx, "words.bind", word)
    if code is not None and code.strip() and resident.command_with(word, code):
        return await gridworker.bind(ctx, code)
    if me.is_gridworker and (reply := await gridworker.handle(ctx, msg)) is not None:
        return reply
    return await resident.handle(ctx, msg)
