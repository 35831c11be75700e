"""The dialogs of opinion polls: 发起投票 (a grid worker puts a question to their grids), 实名投票 (a named
poll asks the voter's name once), 我的网格 (a resident chooses or changes their grid)."""

from __future__ import annotations

from datetime import datetime

from bot.context import Ctx
from bot.dialogs.engine import Dialog, Step
from bot.dialogs.fields import Invalid
from bot.dialogs.poll_fields import (
    AudienceField,
    ClosingField,
    GridField,
    NameField,
    OptionsField,
    QuestionField,
    ReminderField,
    SettingsField,
)
from bot.services import areas, gridworkers, polls
from bot.services.drafts import Draft

POLL_ID, CHOICES = "poll", "choices"  # what the 实名投票 draft carries from the vote that started it


async def submit_poll(ctx: Ctx, draft: Draft) -> str:
    data = draft.data
    worker = await gridworkers.by_openid(ctx.tx, ctx.openid)
    if worker is None:
        raise Invalid(ctx.texts("poll.dialog.no_scope"))
    options = data["settings"]
    spec = polls.Spec(
        question=data["question"],
        options=tuple(data["options"]),
        closes_at=datetime.fromisoformat(data["closing"]),
        audience=tuple(data["audience"]["ids"]),
        max_choices=options["max_choices"],
        anonymous=options["anonymous"],
        live_results=options["live_results"],
        allow_change=options["allow_change"],
        notify_voters=options["notify"],
        remind_before_minutes=data.get("reminder"),
    )
    try:
        poll_id = await polls.create(
            ctx.tx,
            spec,
            creator_name=worker.name,
            worker_id=worker.id,
            via="chat",
            now=ctx.clock.now(),
            settings=ctx.settings.polls,
        )
    except polls.PollError as exc:
        raise Invalid(exc.text(ctx.texts)) from None
    closes = spec.closes_at.astimezone(ctx.settings.tz).strftime("%m-%d %H:%M")
    return ctx.texts("poll.dialog.created", id=poll_id, audience=data["audience"]["label"], closes=closes)


NEW_POLL = Dialog(
    name="poll",
    title="poll.dialog.title",
    intro="poll.dialog.start",
    steps=(
        Step("question", "poll.dialog.question_prompt", "poll.dialog.question_label", QuestionField()),
        Step("options", "poll.dialog.options_prompt", "poll.dialog.options_label", OptionsField()),
        Step("settings", "poll.dialog.settings_prompt", "poll.dialog.settings_label", SettingsField()),
        Step("audience", "poll.dialog.audience_prompt", "poll.dialog.audience_label", AudienceField()),
        Step("closing", "poll.dialog.closing_prompt", "poll.dialog.closing_label", ClosingField()),
        Step("reminder", "poll.dialog.reminder_prompt", "poll.dialog.reminder_label", ReminderField()),
    ),
    submit=submit_poll,
    cancelled="poll.dialog.cancelled",
)


async def submit_name(ctx: Ctx, draft: Draft) -> str:
    from bot.handlers import polls as poll_handler  # the vote itself is the handler's, as for a typed vote

    name = draft.data["name"]
    await ctx.tx.run("UPDATE residents SET display_name = :name WHERE openid = :openid", name=name, openid=ctx.openid)
    poll = await polls.get(ctx.tx, draft.data[POLL_ID])
    if poll is None:
        return ctx.texts("poll.not_found", id=draft.data[POLL_ID])
    return await poll_handler.cast(ctx, poll, list(draft.data[CHOICES]), name=name)


VOTE_NAME = Dialog(
    name="vote_name",
    title="poll.name_title",
    intro=None,
    steps=(Step("name", "poll.ask_name_prompt", "poll.ask_name_label", NameField()),),
    submit=submit_name,
    confirm=False,
    cancelled="poll.name_cancelled",
)


async def submit_grid(ctx: Ctx, draft: Draft) -> str:
    grid = await areas.get(ctx.tx, draft.data["grid"]["id"])
    if grid is None:
        raise Invalid(ctx.texts("grid.not_found", text=draft.data["grid"].get("path", "")))
    changed = await areas.join(ctx.tx, ctx.openid, grid, ctx.clock.now())
    reply = ctx.texts("grid.joined" if changed else "grid.already", path=grid.path)
    if open_polls := await polls.open_for(ctx.tx, ctx.openid, now=ctx.clock.now()):
        reply += "\n\n" + ctx.texts("poll.waiting", count=len(open_polls))
    return reply


MY_GRID = Dialog(
    name="my_grid",
    title="grid.title",
    intro=None,
    steps=(Step("grid", "grid.prompt", "grid.label", GridField()),),
    submit=submit_grid,
    confirm=False,
    cancelled="grid.cancelled",
)
