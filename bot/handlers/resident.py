"""What a resident can ask outside a dialog: 投诉, 我的案件, 查询 <number>, 帮助."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.context import Ctx
from bot.dialogs import ENGINE
from bot.dialogs.fields import normalize
from bot.services import cases
from bot.services.cases import Case
from bot.wechat.inbound import Inbound

QUERY = "查询"


def help_text(ctx: Ctx) -> str:
    return ctx.texts("common.help", example=help_example(ctx))


async def show_help(ctx: Ctx) -> str:
    return help_text(ctx)


async def start_complaint(ctx: Ctx) -> str:
    return await ENGINE.start(ctx, "complaint")


def _local(ctx: Ctx, moment, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(ctx.settings.tz).strftime(fmt)


async def my_cases(ctx: Ctx) -> str:
    found = await cases.for_resident(ctx.tx, ctx.openid)
    if not found:
        return ctx.texts("cases.none")
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


async def query_case(ctx: Ctx, raw_number: str) -> str:
    if not raw_number.strip():
        return ctx.texts("cases.query_usage", example=help_example(ctx))
    number = cases.normalize_number(raw_number, ctx.settings.complaint.case_number_prefix)
    case = await cases.get_for_resident(ctx.tx, ctx.openid, number)
    if case is None:
        return ctx.texts("cases.not_found", number=raw_number.strip())
    return describe_case(ctx, case)


def help_example(ctx: Ctx) -> str:
    day = ctx.clock.now().astimezone(ctx.settings.tz).strftime("%Y%m%d")
    return f"{ctx.settings.complaint.case_number_prefix}{day}-0001"


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


COMMANDS: dict[str, Callable[[Ctx], Awaitable[str]]] = {
    "投诉": start_complaint,
    "我要投诉": start_complaint,
    "我的案件": my_cases,
    "帮助": show_help,
    "?": show_help,
    "？": show_help,
}


async def handle(ctx: Ctx, msg: Inbound) -> str:
    if msg.kind != "text":
        return ctx.texts("common.unsupported_message")
    text = normalize(msg.text)
    if command := COMMANDS.get(text):
        return await command(ctx)
    if text.startswith(QUERY):
        return await query_case(ctx, text[len(QUERY) :])
    return ctx.texts("common.unknown_text", help=help_text(ctx))
