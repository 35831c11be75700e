"""A bound grid worker's commands: 发起投票, 走访, 我的投票, 结果 <编号>, 结束投票 <编号>, 录入 <编号> <门牌>：<选项>,
网格员帮助. Anything else falls through to the resident's handler (a grid worker is a resident too)."""

from __future__ import annotations

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import words
from bot.handlers import polls as poll_handler
from bot.handlers import resident
from bot.services import areas, gridworkers, polls
from bot.services.gridworkers import Worker
from bot.services.polls import Poll, PollError
from bot.wechat.inbound import Inbound


async def handle(ctx: Ctx, msg: Inbound) -> str | None:
    word = words(msg)
    if not word:
        return None
    worker = await gridworkers.by_openid(ctx.tx, ctx.openid)
    if worker is None:
        return None
    if word in ctx.texts.words("words.new_poll"):
        if not worker.area_ids:
            return ctx.texts("poll.dialog.no_scope")
        return await ENGINE.start(ctx, "poll")
    if word in ctx.texts.words("words.visit"):
        return await ENGINE.start(ctx, "visit")
    if word in ctx.texts.words("words.my_polls"):
        return await _my_polls(ctx, worker)
    if word in ctx.texts.words("words.worker_help"):
        return ctx.texts("poll.worker_help", name=worker.name)
    if (
        (rest := resident.after(ctx, "words.results", word)) is not None
        and rest.strip()
        and resident.command_with(word, rest)
    ):
        # Their own polls' results at any time; anyone else's as a resident may see them.
        poll = await _own(ctx, worker, rest)
        return await poll_handler.results_command(ctx, rest, staff=not isinstance(poll, str))
    if (rest := resident.after(ctx, "words.close_poll", word)) is not None:
        return await _close(ctx, worker, rest)
    if (rest := resident.after(ctx, "words.door_vote", word)) is not None:
        return await _door_vote(ctx, worker, rest)
    return None


async def _own(ctx: Ctx, worker: Worker, ref: str) -> Poll | str:
    """The poll `ref` names, if this worker may act on it (theirs, or put to grids they look after)."""
    ref = ref.strip(" ：:")
    if not ref.isdigit():
        return ctx.texts("poll.worker_usage")
    poll = await polls.get(ctx.tx, int(ref))
    if poll is None:
        return ctx.texts("poll.not_found", id=ref)
    if poll.creator_worker_id != worker.id:
        mine = set(await gridworkers.grids_of(ctx.tx, worker))
        if not set(poll.grid_ids) <= mine:
            return ctx.texts("poll.not_yours", id=poll.id)
    return poll


async def _close(ctx: Ctx, worker: Worker, rest: str) -> str:
    poll = await _own(ctx, worker, rest)
    if isinstance(poll, str):
        return poll
    if poll.creator_worker_id != worker.id:
        return ctx.texts("poll.not_yours", id=poll.id)
    if not await polls.close(
        ctx.tx, poll, by=worker.name, now=ctx.clock.now(), texts=ctx.texts, clock=ctx.clock, creator_openid=None
    ):
        return ctx.texts("poll.already_closed", id=poll.id)
    closed = await polls.get(ctx.tx, poll.id)
    assert closed is not None
    # The creator reads the results right here; the voters get them through the outbox if the poll says so.
    return polls.results_text(ctx.texts, closed, await polls.tally(ctx.tx, closed))


async def _door_vote(ctx: Ctx, worker: Worker, rest: str) -> str:
    """录入 12 3栋501：2 — a vote collected at a door, by household."""
    parts = rest.strip().split(maxsplit=1)
    if len(parts) != 2:
        return ctx.texts("poll.door_usage")
    poll = await _own(ctx, worker, parts[0])
    if isinstance(poll, str):
        return poll
    body = parts[1].replace("：", ":")
    household, sep, chosen = body.rpartition(":")
    if not sep:
        household, _, chosen = body.rpartition(" ")
    if not household.strip() or not chosen.strip():
        return ctx.texts("poll.door_usage")
    try:
        choices = polls.parse_choices(poll, chosen)
        voted = await polls.door_vote(ctx.tx, poll, household, choices, by=worker.name, now=ctx.clock.now())
    except PollError as exc:
        return exc.text(ctx.texts)
    labels = "、".join(f"{c}. {poll.options[c - 1]}" for c in voted.choices)
    key = "poll.door_changed" if voted.outcome == "changed" else "poll.door_recorded"
    return ctx.texts(key, id=poll.id, household=household.strip(), choices=labels)


async def _my_polls(ctx: Ctx, worker: Worker) -> str:
    found = await polls.listing(ctx.tx, worker_id=worker.id, limit=10)
    if not found:
        return ctx.texts("poll.worker_none")
    tree = await areas.all_areas(ctx.tx)
    lines = [ctx.texts("poll.worker_list_head", count=len(found))]
    for p in found:
        t = await polls.tally(ctx.tx, p)
        lines.append(
            ctx.texts(
                "poll.worker_list_item",
                id=p.id,
                question=p.question,
                state=ctx.texts(f"poll.state_{p.status}"),
                audience=polls.area_label(tree, p.audience),
                size=p.audience_size,
                reached=p.reached,
                waiting=p.waiting,
                voted=t.wechat_voters,
                door=t.door_voters,
                closes=p.closes_at.astimezone(ctx.settings.tz).strftime("%m-%d %H:%M"),
            )
        )
    return "\n".join(lines)


async def bind(ctx: Ctx, code: str) -> str:
    """绑定 <code>: this WeChat account becomes the invited grid worker's."""
    code = code.strip(" ：:")
    if not gridworkers.looks_like_code(code):
        return ctx.texts("gridworker.bind_usage")
    try:
        worker = await gridworkers.bind(ctx.tx, code, ctx.openid, now=ctx.clock.now())
    except gridworkers.WorkerError as exc:
        return ctx.texts(f"gridworker.bind_{exc.key}", **exc.values)
    tree = await areas.all_areas(ctx.tx)
    by_id = {a.id: a for a in tree}
    scope = "、".join(by_id[i].path for i in worker.area_ids if i in by_id) or ctx.texts("gridworker.no_areas")
    return ctx.texts("gridworker.bound", name=worker.name, areas=scope)
