"""Canned replies (常用答复): texts staff use again and again, managed by admins, with placeholders filled in
for the case at hand — {案件编号} {问题类别} {地点} {承办单位} {受理时间}."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from storage.fast import Conflict, Tx

PLACEHOLDERS = ("案件编号", "问题类别", "地点", "承办单位", "受理时间")
MAX_TITLE = 40
MAX_BODY = 1000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class CannedError(Exception):
    """A refused change: `key` names the reason (texts [console.canned]), `values` fill it in."""

    def __init__(self, key: str, **values: str):
        super().__init__(key, values)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Canned:
    id: int
    title: str
    body: str
    updated_by: str
    updated_at: datetime


def check(title: str, body: str) -> None:
    if not title or len(title) > MAX_TITLE:
        raise CannedError("bad_title", max=str(MAX_TITLE))
    if not body or len(body) > MAX_BODY:
        raise CannedError("bad_body", max=str(MAX_BODY))
    unknown = [name for name in _PLACEHOLDER.findall(body) if name not in PLACEHOLDERS]
    if unknown:
        raise CannedError("unknown_placeholder", name=unknown[0], known="、".join(f"{{{p}}}" for p in PLACEHOLDERS))


def fill(
    body: str, *, number: str, category: str, place: str, unit: str | None, received: datetime, tz: ZoneInfo
) -> str:
    values = {
        "案件编号": number,
        "问题类别": category,
        "地点": place,
        "承办单位": unit or "",
        "受理时间": received.astimezone(tz).strftime("%Y年%m月%d日"),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body)


def _canned(tx: Tx, r) -> Canned:
    return Canned(r["id"], r["title"], r["body"], r["updated_by"], tx.dt(r["updated_at"]))


async def listing(tx: Tx) -> list[Canned]:
    rows = await tx.all("SELECT id, title, body, updated_by, updated_at FROM canned_replies ORDER BY title")
    return [_canned(tx, r) for r in rows]


async def get(tx: Tx, canned_id: int) -> Canned | None:
    r = await tx.one("SELECT id, title, body, updated_by, updated_at FROM canned_replies WHERE id = :id", id=canned_id)
    return None if r is None else _canned(tx, r)


async def save(tx: Tx, *, canned_id: int | None, title: str, body: str, by: str, now: datetime) -> int:
    """Add (canned_id None) or change one; its id. CannedError when invalid, the title taken, or it is gone."""
    title, body = title.strip(), body.strip()
    check(title, body)
    try:
        if canned_id is None:
            return await tx.val(
                "INSERT INTO canned_replies (title, body, updated_by, updated_at) VALUES (:t, :b, :by, :now) "
                "RETURNING id",
                t=title,
                b=body,
                by=by,
                now=tx.ts(now),
            )
        changed = await tx.val(
            "UPDATE canned_replies SET title = :t, body = :b, updated_by = :by, updated_at = :now WHERE id = :id "
            "RETURNING id",
            t=title,
            b=body,
            by=by,
            now=tx.ts(now),
            id=canned_id,
        )
    except Conflict:
        raise CannedError("title_taken", title=title) from None
    if changed is None:
        raise CannedError("gone")
    return changed


async def delete(tx: Tx, canned_id: int) -> bool:
    return await tx.run("DELETE FROM canned_replies WHERE id = :id", id=canned_id) > 0
