"""Who is speaking and what they are in the middle of: events, an open dialog, or a resident's command."""

from __future__ import annotations

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import words
from bot.handlers import events, resident
from bot.services import drafts, residents
from bot.wechat.inbound import Inbound


async def route(ctx: Ctx, msg: Inbound) -> str | None:
    if msg.kind == "event":
        return await events.handle(ctx, msg)
    await residents.seen(ctx.tx, msg.openid, ctx.clock.now(), interaction=True)
    state = await drafts.get(ctx.tx, msg.openid)
    if state is not None:
        word = words(msg)
        if resident.is_lookup(ctx, word):
            # Asking about their cases must not cost the resident their place in the dialog.
            return "\n\n".join([await resident.lookup(ctx, word), ENGINE.reminder(ctx, state)])
        return await ENGINE.handle(ctx, state, msg)
    return await resident.handle(ctx, msg)
