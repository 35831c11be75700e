"""The conversation with a resident as staff read it on a case page: what they wrote, what the bot answered at
once (written by bot/intake.py in the message's own transaction) and every notice of the outbox with how its
delivery went, in the order it happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.fast import Tx, unjs

_INSERT = """
INSERT INTO conversation_messages (openid, at, direction, kind, text, media_id)
VALUES (:openid, :at, :direction, :kind, :text, :media_id)"""


@dataclass(frozen=True)
class Line:
    at: datetime
    # resident · bot (a passive reply) · notice (a message of the outbox)
    who: str
    kind: str
    text: str | None
    media_id: str | None = None
    # For notices: pending · sent · failed, and why it failed.
    delivery: str | None = None
    error: str | None = None


async def record_inbound(
    tx: Tx, openid: str, kind: str, text: str | None, media_id: str | None, *, now: datetime
) -> None:
    await tx.run(_INSERT, openid=openid, at=tx.ts(now), direction="in", kind=kind, text=text, media_id=media_id or None)


async def record_reply(tx: Tx, openid: str, text: str, *, now: datetime) -> None:
    await tx.run(_INSERT, openid=openid, at=tx.ts(now), direction="out", kind="reply", text=text, media_id=None)


async def for_resident(tx: Tx, openid: str, *, limit: int = 200) -> list[Line]:
    """The latest `limit` lines of both kinds, oldest first (at one moment, what the resident and the bot said
    before the notices it led to)."""
    said = [
        Line(
            tx.dt(r["at"]),
            "resident" if r["direction"] == "in" else "bot",
            r["kind"],
            r["text"],
            r["media_id"],
        )
        for r in await tx.all(
            "SELECT at, direction, kind, text, media_id FROM conversation_messages WHERE openid = :openid "
            "ORDER BY id DESC LIMIT :limit",
            openid=openid,
            limit=limit,
        )
    ]
    notices = []
    for r in await tx.all(
        "SELECT created_at, kind, payload, status, last_error FROM outbox WHERE openid = :openid "
        "ORDER BY id DESC LIMIT :limit",
        openid=openid,
        limit=limit,
    ):
        payload = unjs(r["payload"]) or {}
        text = payload.get("content") or payload.get("head") or ""
        notices.append(Line(tx.dt(r["created_at"]), "notice", r["kind"], text, None, r["status"], r["last_error"]))
    lines = said[::-1] + notices[::-1]  # each oldest first; the sort below is stable
    lines.sort(key=lambda line: line.at)
    return lines[-limit:]
