"""What a resident can do with opinion polls: 投票 (list, or show one), 投票 <编号> <选项>, a bare option number
for the poll last put in front of them, a tapped option, 结果 <编号>, and 我的网格."""

from __future__ import annotations

import re

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import as_number
from bot.services import areas, drafts, polls
from bot.services.polls import Poll, PollError

# A reply this short may be a vote without the word 投票 ("2", "1 3", "第一个", "不接受").
BARE_VOTE_CHARS = 12


def _labels(poll: Poll, choices: list[int]) -> str:
    return "、".join(f"{c}. {poll.options[c - 1]}" for c in choices)


def _closes(ctx: Ctx, poll: Poll) -> str:
    return poll.closes_at.astimezone(ctx.settings.tz).strftime("%m-%d %H:%M")


async def cast(ctx: Ctx, poll: Poll, choices: list[int], *, name: str | None = None, add: bool = False) -> str:
    """Record the resident's choices and say what was recorded (a named poll first asks their name, once)."""
    try:
        voted = await polls.vote(ctx.tx, poll, ctx.openid, choices, now=ctx.clock.now(), name=name, add=add)
    except PollError as exc:
        if exc.key == "needs_name":
            return await _ask_name(ctx, poll, choices)
        return exc.text(ctx.texts)
    key = {"recorded": "poll.voted", "changed": "poll.changed", "unchanged": "poll.unchanged"}[voted.outcome]
    if add and poll.multiple and voted.outcome != "unchanged" and len(voted.choices) < poll.max_choices:
        key = "poll.voted_more"
    reply = ctx.texts(key, choices=_labels(poll, voted.choices), max=poll.max_choices)
    # The tally is not recounted for every vote (10,000 residents may vote within minutes); 结果 shows it.
    after = (
        ctx.texts("poll.results_hint", id=poll.id)
        if poll.live_results
        else ctx.texts("poll.results_later", closes=_closes(ctx, poll))
    )
    return f"{reply}\n{after}"


async def _ask_name(ctx: Ctx, poll: Poll, choices: list[int]) -> str:
    """A named poll asks the voter's name first. A tap may come while they are in the middle of something: a
    name already being asked for takes this vote instead; another dialog with answers is not taken from them."""
    state = await drafts.get(ctx.tx, ctx.openid)
    initial = {"poll": poll.id, "choices": choices}
    if state is not None and state.data and state.dialog == "vote_name":
        state.data, state.mode, state.step = initial, "step", 0
        await drafts.save(ctx.tx, state)
        return ctx.texts("poll.ask_name_prompt")
    if state is not None and state.data:
        return ctx.texts("poll.name_later", id=poll.id)
    return await ENGINE.start(ctx, "vote_name", initial=initial)


async def tapped(ctx: Ctx, poll_id: int, option: int) -> str:
    poll = await polls.get(ctx.tx, poll_id)
    if poll is None or option > len(poll.options):
        return ctx.texts("poll.not_found", id=poll_id)
    return await cast(ctx, poll, [option], add=poll.multiple)


async def show(ctx: Ctx, poll: Poll) -> str:
    """The poll as text (a passive reply cannot carry tappable options), now the one a bare number answers."""
    if not await polls.eligible(ctx.tx, poll, ctx.openid):
        return PollError("not_eligible").text(ctx.texts)
    await polls.offer(ctx.tx, poll, ctx.openid, ctx.clock.now())
    menu = polls.menu_payload(ctx.texts, poll, ctx.settings.tz)
    lines = [menu["head"], *(label for _id, label in menu["options"])]
    lines.append(ctx.texts("poll.typed_tail_multiple" if poll.multiple else "poll.typed_tail", id=poll.id))
    if (mine := await polls.ballot_of(ctx.tx, poll, ctx.openid)) is not None:
        key = "poll.already_may_change" if poll.allow_change else "poll.already_final"
        lines.append(ctx.texts(key, choices=_labels(poll, mine)))
    return "\n".join(lines)


async def vote_command(ctx: Ctx, rest: str) -> str:
    """投票 → the open polls of their grid (the only one shown at once); 投票 12 → poll 12; 投票 12 2 → a vote."""
    parts = rest.strip(" ：:").split(maxsplit=1)
    if not parts:
        return await _open_list(ctx)
    if not parts[0].isdigit():
        return ctx.texts("poll.vote_usage")
    poll = await polls.get(ctx.tx, int(parts[0]))
    if poll is None:
        return ctx.texts("poll.not_found", id=parts[0])
    if len(parts) == 1:
        return await show(ctx, poll)
    try:
        choices = polls.parse_choices(poll, parts[1])
    except PollError as exc:
        return exc.text(ctx.texts)
    return await cast(ctx, poll, choices)


async def _open_list(ctx: Ctx) -> str:
    await polls.take_waiting(ctx.tx, ctx.openid, now=ctx.clock.now())
    found = await polls.open_for(ctx.tx, ctx.openid, now=ctx.clock.now())
    if not found:
        grid = await ctx.tx.val("SELECT grid_id FROM residents WHERE openid = :openid", openid=ctx.openid)
        return ctx.texts("poll.no_grid") if grid is None else ctx.texts("poll.none_open")
    unvoted = [p for p in found if await polls.ballot_of(ctx.tx, p, ctx.openid) is None]
    if len(found) == 1 or len(unvoted) == 1:
        return await show(ctx, (unvoted or found)[0])
    lines = [ctx.texts("poll.list_head", count=len(found))]
    for p in found:
        voted = ctx.texts("poll.list_voted") if p not in unvoted else ""
        lines.append(ctx.texts("poll.list_item", id=p.id, question=p.question, closes=_closes(ctx, p), voted=voted))
    lines.append(ctx.texts("poll.list_tail", example=found[0].id))
    return "\n".join(lines)


async def results_command(ctx: Ctx, rest: str, *, staff: bool = False) -> str:
    """结果 12: the tally — for residents only while the poll allows it (or once closed); staff always."""
    ref = as_number(rest.strip(" ：:"))
    if not ref.isdigit():
        return ctx.texts("poll.results_usage", example=1)
    poll = await polls.get(ctx.tx, int(ref))
    if poll is None:
        return ctx.texts("poll.not_found", id=ref)
    if not staff and not polls.may_see_results(poll):
        return ctx.texts("poll.results_later", closes=_closes(ctx, poll))
    return polls.results_text(ctx.texts, poll, await polls.tally(ctx.tx, poll))


async def bare_vote(ctx: Ctx, word: str, *, rating_since=None) -> str | None:
    """A bare "2" or "1 3": the answer to the poll last put in front of them — unless a request to rate a case
    came after it (`rating_since`), or it is no choice at all. None: not a vote."""
    if len(word) > BARE_VOTE_CHARS or re.search(r"\d{4,}", word):
        return None  # a phone number, a date: not option numbers
    last = await polls.last_offered(ctx.tx, ctx.openid, now=ctx.clock.now())
    if last is None:
        return None
    poll, offered_at = last
    if rating_since is not None and rating_since > offered_at:
        return None
    try:
        choices = polls.parse_choices(poll, word)
    except PollError as exc:
        if exc.key == "not_choice":
            return None
        return exc.text(ctx.texts)
    return await cast(ctx, poll, choices)


async def my_grid(ctx: Ctx) -> str:
    grid = await areas.grid_of(ctx.tx, ctx.openid)
    head = ctx.texts("grid.current", path=grid.path) if grid else ctx.texts("grid.none_yet")
    return head + await ENGINE.start(ctx, "my_grid")
