"""`frontdoor cases list|show`: cases for scripting and operations (plain text or --json)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.services import cases, drafts, media
from bot.services.cases import Case
from bot.texts import Texts
from storage.fast import Tx, open_store


@asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[Tx]:
    """A read transaction on a database opened just for this command."""
    store = open_store(settings.database.url, pool_size=1)
    try:
        async with store.read() as tx:
            yield tx
    finally:
        await store.close()


def print_json(data) -> int:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def case_dict(case: Case, *, with_events: bool = False) -> dict:
    out = {
        "number": case.number,
        "status": case.status,
        "category": case.category,
        "tier": case.tier,
        "lead_unit": case.lead_unit,
        "place": case.place_label,
        "latitude": case.latitude,
        "longitude": case.longitude,
        "description": case.description,
        "photos": case.photo_media_ids,
        "voices": case.voice_media_ids,
        "videos": case.video_media_ids,
        "links": case.links,
        "contact_phone": case.contact_phone,
        "openid": case.openid,
        "created_at": case.created_at.isoformat(),
        "accept_due_at": case.accept_due_at.isoformat() if case.accept_due_at else None,
    }
    if with_events:
        out["ledger"] = [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "from": e.from_status,
                "to": e.to_status,
                "note": e.note,
            }
            for e in case.events
        ]
    return out


def _plain(value) -> str:
    if value is None or value == []:
        return "-"
    return "、".join(map(str, value)) if isinstance(value, list) else str(value)


def _local(settings: Settings, moment) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


async def list_cases(settings: Settings, texts: Texts, *, status: str | None, as_json: bool, limit: int) -> int:
    async with reading(settings) as tx:
        found = await cases.listing(tx, status=status, limit=limit)
    if as_json:
        return print_json([case_dict(c) for c in found])
    for c in found:
        print(
            f"{c.number}  {texts(f'status.{c.status}')}  {_local(settings, c.created_at)}  {c.category}  "
            f"{c.place_label[:30]}"
        )
    if not found:
        print(texts("cli.no_cases"))
    return 0


async def show_case(settings: Settings, texts: Texts, number: str, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        case = await cases.get(tx, cases.find_number(number, settings.complaint.case_number_prefix) or number)
        files = [] if case is None else await media.for_case(tx, case.id)
    if case is None:
        print(texts("cli.case_not_found", number=number), file=sys.stderr)
        return 1
    data = case_dict(case, with_events=True)
    if as_json:
        return print_json({**data, "files": [_file_dict(f) for f in files]})
    shown = {
        **data,
        "status": texts(f"status.{case.status}"),
        "created_at": _local(settings, case.created_at),
        "accept_due_at": _local(settings, case.accept_due_at),
    }
    for key, value in shown.items():
        if key != "ledger":
            print(f"{texts(f'cli.fields.{key}')}：{_plain(value)}")
    print(texts("cli.ledger"))
    for e in case.events:
        moves = f"{texts(f'status.{e.from_status}') if e.from_status else '-'} → " + (
            texts(f"status.{e.to_status}") if e.to_status else "-"
        )
        actor = texts(f"actor.{e.actor}") if texts.has(f"actor.{e.actor}") else e.actor
        print(f"  {_local(settings, e.at)}  {actor}  {texts(f'ledger.{e.action}')}  {moves}  {e.note or ''}")
    _print_files(texts, files)
    return 0


def _file_dict(f: media.MediaFile) -> dict:
    return {
        "kind": f.kind,
        "media_id": f.media_id,
        "status": f.status,
        "path": f.path,
        "size": f.size,
        "content_type": f.content_type,
        "sha256": f.sha256,
        "attempts": f.attempts,
        "last_error": f.last_error,
        "fetched_at": f.fetched_at.isoformat() if f.fetched_at else None,
    }


def _print_files(texts: Texts, files: list[media.MediaFile]) -> None:
    """Where the case's photos and voice are stored (or why they are not)."""
    print(texts("cli.media.files"))
    for f in files:
        kind = texts(f"cli.media.kind_{f.kind}")
        print(
            texts(
                f"cli.media.{f.status}",
                kind=kind,
                path=f.path,
                size=f.size,
                content_type=f.content_type,
                sha256=f.sha256,
                attempts=f.attempts,
                error=f.last_error or "",
            )
        )
    if not files:
        print(texts("cli.media.no_files"))


async def list_drafts(settings: Settings, texts: Texts, *, human_only: bool, as_json: bool) -> int:
    """Unfinished dialogs; with --human only those whose resident asked for a person (人工)."""
    async with reading(settings) as tx:
        found = await drafts.listing(tx, human_only=human_only, limit=10_000)
    if as_json:
        return print_json(
            [
                {
                    "openid": d.openid,
                    "dialog": d.dialog,
                    "step": d.step + 1,
                    "mode": d.mode,
                    "needs_human": d.needs_human,
                    "updated_at": d.updated_at.isoformat(),
                    "answers": d.data,
                }
                for d in found
            ]
        )
    for d in found:
        print(
            texts(
                "cli.draft_line",
                updated=_local(settings, d.updated_at),
                openid=d.openid,
                step=d.step + 1,
                flag=texts("cli.draft_human") if d.needs_human else "",
                mode=d.mode,
                dialog=texts(f"{d.dialog}.title") if texts.has(f"{d.dialog}.title") else d.dialog,
            )
        )
    if not found:
        print(texts("cli.no_drafts"))
    return 0


async def write_once(settings: Settings, work, refusals: tuple[type[Exception], ...]):
    """Run `work(tx)` in one write transaction on a store opened just for this command: (0, its result), or
    (1, None) once a refusal (a move the rules do not allow) has been printed for the operator."""
    store = open_store(settings.database.url, pool_size=1)
    try:
        async with store.write() as tx:
            return 0, await work(tx)
    except refusals as exc:
        print(str(exc), file=sys.stderr)
        return 1, None
    finally:
        await store.close()


def moved_line(texts: Texts, moved) -> str:
    return texts(
        "cli.moved",
        number=moved.number,
        before=texts(f"status.{moved.from_status}"),
        after=texts(f"status.{moved.to_status}"),
    )


async def act(settings: Settings, texts: Texts, action: str, number: str, **options) -> int:
    """`frontdoor cases accept|refuse|assign|… NUMBER --by OPERATOR …`: one lifecycle move, committed with its
    ledger entry and the resident's notice (delivered by a running server's outbox)."""
    from bot.clock import Clock
    from bot.services import lifecycle

    prefix = settings.complaint.case_number_prefix
    number = cases.find_number(number, prefix) or number
    if options.get("into"):
        options["into"] = cases.find_number(options["into"], prefix) or options["into"]
    request = lifecycle.Request(action=action, number=number, **options)
    code, moved = await write_once(
        settings,
        lambda tx: lifecycle.move(tx, request, clock=Clock(), settings=settings, texts=texts),
        (lifecycle.MoveRefused,),
    )
    if not code:
        print(moved_line(texts, moved))
    return code


async def route_or_tier(
    settings: Settings, texts: Texts, action: str, number: str, *, by: str, tier: str | None
) -> int:
    """`frontdoor cases route NUMBER` (分流 by the rules) or `cases tier NUMBER 难事` (三事分解 by hand)."""
    from bot.clock import Clock
    from bot.services import lifecycle, routing

    number = cases.find_number(number, settings.complaint.case_number_prefix) or number

    async def work(tx):
        if action == "route":
            moved = await routing.route(tx, number, by=by, clock=Clock(), settings=settings, texts=texts)
            return moved_line(texts, moved)
        pool = await routing.set_tier(tx, number, tier or "", by=by, clock=Clock(), settings=settings, texts=texts)
        return texts("cli.tiered", number=number, tier=tier, pool=pool)

    code, message = await write_once(settings, work, (lifecycle.MoveRefused,))
    if not code:
        print(message)
    return code
