"""`frontdoor cases list|show`: cases for scripting and operations (plain text or --json)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.services import cases, drafts
from bot.services.cases import Case
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
        "place": case.place_label,
        "latitude": case.latitude,
        "longitude": case.longitude,
        "description": case.description,
        "photos": case.photo_media_ids,
        "voices": case.voice_media_ids,
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


async def list_cases(settings: Settings, *, status: str | None, as_json: bool, limit: int) -> int:
    async with reading(settings) as tx:
        found = await cases.listing(tx, status=status, limit=limit)
        rows = [case_dict(c) for c in found]
    if as_json:
        return print_json(rows)
    tz = settings.tz
    for c in found:
        print(
            f"{c.number}  {c.status:<11} {c.created_at.astimezone(tz):%Y-%m-%d %H:%M}  {c.category}  "
            f"{c.place_label[:30]}"
        )
    if not found:
        print("（没有案件 / no cases）")
    return 0


async def show_case(settings: Settings, number: str, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        case = await cases.get(tx, cases.normalize_number(number, settings.complaint.case_number_prefix))
        data = case_dict(case, with_events=True) if case else None
    if data is None:
        print(f"没有找到案件 {number} / no such case", file=sys.stderr)
        return 1
    if as_json:
        return print_json(data)
    for key, value in data.items():
        if key != "ledger":
            print(f"{key:>14}: {value}")
    print("        ledger:")
    for e in data["ledger"]:
        print(f"  {e['at']}  {e['actor']}  {e['action']}  {e['from'] or '-'} → {e['to'] or '-'}  {e['note'] or ''}")
    return 0


async def list_drafts(settings: Settings, *, human_only: bool, as_json: bool) -> int:
    """Unfinished dialogs; with --human only those whose resident asked for a person (人工)."""
    async with reading(settings) as tx:
        found = await drafts.listing(tx, human_only=human_only, limit=10_000)
        rows = [
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
    if as_json:
        return print_json(rows)
    for r in rows:
        flag = "人工" if r["needs_human"] else "    "
        print(f"{r['updated_at'][:16]}  {flag}  {r['openid']}  {r['dialog']} 第{r['step']}步 ({r['mode']})")
    if not rows:
        print("（没有草稿 / no drafts）")
    return 0
