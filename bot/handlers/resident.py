"""What a resident can ask outside a dialog: 投诉, 我的案件, 查询 <number>, 帮助, 人工 — typed or spoken."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import as_number, clean_text, words
from bot.handlers import polls as poll_handler
from bot.services import cases, drafts, lifecycle
from bot.services.cases import Case
from bot.wechat.inbound import Inbound

# A photo or a few words this soon after submitting are added to the case just submitted.
RECENT = timedelta(minutes=30)
NOTE_CHARS = 5
# Text this long that is no command is someone describing their problem.
UNSOLICITED_STORY_CHARS = 15
# A closed case can be rated this long after closing.
RATING_WINDOW = timedelta(days=30)


def _is_rating(ctx: Ctx, word: str) -> bool:
    choices = ctx.texts.words("words.ratings")
    return word in choices or as_number(word) in [str(i) for i in range(1, len(choices) + 1)]


def help_example(ctx: Ctx) -> str:
    day = ctx.clock.now().astimezone(ctx.settings.tz).strftime("%Y%m%d")
    return f"{ctx.settings.complaint.case_number_prefix}{day}-0001"


def help_text(ctx: Ctx) -> str:
    return ctx.texts("common.help", example=help_example(ctx))


async def show_help(ctx: Ctx) -> str:
    return help_text(ctx)


async def start_complaint(ctx: Ctx) -> str:
    return await ENGINE.start(ctx, "complaint")


async def ask_for_person(ctx: Ctx) -> str:
    return ctx.texts("common.human_outside", hotline=ctx.settings.complaint.hotline)


def _local(ctx: Ctx, moment, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(ctx.settings.tz).strftime(fmt)


async def my_cases(ctx: Ctx) -> str:
    found = await cases.for_resident(ctx.tx, ctx.openid)
    if not found:
        filing = await drafts.get(ctx.tx, ctx.openid)  # mid-dialog, "send 投诉" would be the wrong hint
        return ctx.texts("cases.none") + ("" if filing else ctx.texts("cases.none_hint"))
    lines = [ctx.texts("cases.list_head", count=len(found))]
    for case in found:
        lines.append(
            ctx.texts(
                "cases.list_item",
                number=case.number,
                category=case.category,
                status=ctx.texts(f"status.{case.status}"),
                date=_local(ctx, case.created_at, "%m-%d"),
            )
        )
    lines.append(ctx.texts("cases.list_tail"))
    return "\n".join(lines)


async def query_case(ctx: Ctx, asked: str) -> str:
    number = cases.find_number(asked, ctx.settings.complaint.case_number_prefix)
    if number is None:
        if asked.strip(" ：:"):
            return ctx.texts("cases.not_found", number=asked.strip(" ：:"))
        return ctx.texts("cases.query_usage", example=help_example(ctx))
    case = await cases.get_for_resident(ctx.tx, ctx.openid, number)
    if case is None:
        return ctx.texts("cases.not_found", number=number)
    return describe_case(ctx, case)


def describe_case(ctx: Ctx, case: Case) -> str:
    parts = [
        ctx.texts(
            "cases.detail",
            number=case.number,
            status=ctx.texts(f"status.{case.status}"),
            category=case.category,
            place=case.place_label,
            description=case.description,
            created=_local(ctx, case.created_at),
        )
    ]
    if case.contact_phone:
        parts.append(ctx.texts("cases.detail_contact", phone=case.contact_phone))
    parts.append(ctx.texts("cases.detail_ledger_head"))
    for event in case.events:
        note = f"：{event.note}" if event.note else ""
        parts.append(
            ctx.texts(
                "cases.detail_ledger_item",
                at=_local(ctx, event.at),
                action=ctx.texts(f"ledger.{event.action}"),
                note=note,
            )
        )
    return "\n".join(parts)


# What a resident can ask for by name; the words for each live in texts.toml [words].
COMMANDS: tuple[tuple[str, Callable[[Ctx], Awaitable[str]]], ...] = (
    ("words.complaint", start_complaint),
    ("words.my_cases", my_cases),
    ("words.help", show_help),
    ("words.human", ask_for_person),
    ("words.my_grid", poll_handler.my_grid),
)


def _command(ctx: Ctx, word: str) -> Callable[[Ctx], Awaitable[str]] | None:
    return next((action for key, action in COMMANDS if word in ctx.texts.words(key)), None)


def after(ctx: Ctx, key: str, word: str) -> str | None:
    """What follows one of the [words] `key` at the start of `word`, or None when it does not start so."""
    prefix = next((w for w in sorted(ctx.texts.words(key), key=len, reverse=True) if word.startswith(w)), None)
    return None if prefix is None else word[len(prefix) :]


def command_with(word: str, rest: str) -> bool:
    """A word such as 投票, 结果 or 绑定 starting `word` is that command when what follows starts with its
    number or code, or when the message is short; a story that merely begins with it ("结果物业说不归他们管，
    让我找社区…") is someone telling us their problem."""
    first = rest.strip(" ：:")[:1]
    return (first.isascii() and first.isalnum()) or len(word) < UNSOLICITED_STORY_CHARS


async def withdraw_case(ctx: Ctx, asked: str) -> str:
    """撤回 <number>: the resident withdraws their own open case."""
    number = cases.find_number(asked, ctx.settings.complaint.case_number_prefix)
    if number is None:
        return ctx.texts("lifecycle.withdraw_usage", example=help_example(ctx))
    request = lifecycle.Request(action="withdraw", number=number, by="resident", openid=ctx.openid)
    try:
        await lifecycle.move(ctx.tx, request, clock=ctx.clock, settings=ctx.settings, texts=ctx.texts)
    except lifecycle.MoveRefused as exc:
        return str(exc)
    return ctx.texts("notice.withdrawn", number=number)


def _query_rest(ctx: Ctx, word: str) -> str | None:
    """What follows 查询 (or a city's synonym), or None when the resident did not ask to look something up."""
    return after(ctx, "words.query", word)


def is_lookup(ctx: Ctx, word: str) -> bool:
    """Questions that read cases and change nothing — answered even in the middle of a dialog."""
    if word in ctx.texts.words("words.my_cases"):
        return True
    rest = _query_rest(ctx, word)
    return rest is not None and cases.find_number(rest, ctx.settings.complaint.case_number_prefix) is not None


async def lookup(ctx: Ctx, word: str) -> str:
    rest = _query_rest(ctx, word)
    return await my_cases(ctx) if rest is None else await query_case(ctx, rest)


def _story_after_command(ctx: Ctx, msg: Inbound) -> str | None:
    """The story told with the command ("投诉 物业乱收停车费", "我要投诉物业乱收费"), as typed; or None."""
    raw = (msg.text or "").strip()
    for start in sorted(ctx.texts.words("words.complaint"), key=len, reverse=True):
        if raw.startswith(start) and (rest := raw[len(start) :].strip(" \u3000:：,，")):
            return rest
    return None


async def handle(ctx: Ctx, msg: Inbound) -> str:
    now = ctx.clock.now()
    if msg.kind == "image" and msg.media_id:
        number = await cases.add_photo_to_recent(ctx.tx, ctx.openid, msg.media_id, now=now, within=RECENT)
        if number is not None:
            return ctx.texts("common.photo_added", number=number)
        return await ENGINE.start(ctx, "complaint", seed=msg)  # many complaints begin with a photo
    if msg.kind == "location":
        return await ENGINE.start(ctx, "complaint", seed=msg)
    if msg.kind == "voice" and not msg.text:
        return ctx.texts("common.voice_unheard")
    word = words(msg)
    if not word:
        return ctx.texts("common.unsupported_message")
    if command := _command(ctx, word):
        return await command(ctx)
    if (story := _story_after_command(ctx, msg)) is not None:
        return await ENGINE.start(ctx, "complaint", seed=replace(msg, text=story))
    if (rest := _query_rest(ctx, word)) is not None:
        return await query_case(ctx, rest)
    if (rest := after(ctx, "words.withdraw", word)) is not None:
        return await withdraw_case(ctx, rest)
    if (rest := after(ctx, "words.vote", word)) is not None and command_with(word, rest):
        return await poll_handler.vote_command(ctx, rest)
    if (rest := after(ctx, "words.results", word)) is not None and command_with(word, rest):
        return await poll_handler.results_command(ctx, rest)
    if len(word) <= poll_handler.BARE_VOTE_CHARS:
        # "2" answers whichever was asked last: the poll put to them, or the request to rate a closed case.
        to_rate = await cases.to_rate(ctx.tx, ctx.openid, now=now, within=RATING_WINDOW)
        rating_since = await cases.closed_at(ctx.tx, to_rate) if to_rate else None
        if (voted := await poll_handler.bare_vote(ctx, word, rating_since=rating_since)) is not None:
            return voted
    if _is_rating(ctx, word) and (to_rate := await cases.to_rate(ctx.tx, ctx.openid, now=now, within=RATING_WINDOW)):
        # The answer to "请回复数字评价办理结果": the rating dialog, with this first answer already in it.
        return await ENGINE.start(ctx, "rating", seed=msg, initial={"case": to_rate})
    prefix = ctx.settings.complaint.case_number_prefix
    if cases.find_number(word, prefix):
        return await query_case(ctx, word)  # a bare case number: they want to know about it
    recent = await cases.recent_pending(ctx.tx, ctx.openid, now=now, within=RECENT)
    if recent is not None and word in ctx.texts.words("words.submit"):  # a second tap on 提交
        return ctx.texts("common.already_submitted", number=recent["number"])
    story = clean_text(msg.text or "")
    if recent is not None and len(story) >= NOTE_CHARS:
        number = await cases.add_note_to_recent(ctx.tx, ctx.openid, story, now=now, within=RECENT)
        return ctx.texts("common.note_added", number=number)
    if len(story) >= UNSOLICITED_STORY_CHARS:  # someone telling us their problem: start recording it
        return await ENGINE.start(ctx, "complaint", seed=msg)
    return ctx.texts("common.unknown_text", help=help_text(ctx))
