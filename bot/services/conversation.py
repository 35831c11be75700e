"""The conversation with a resident as staff read it on a case page: what they wrote and what the bot answered
at once — both kept on the message's inbound_messages row, written by bot/intake.py in the message's own
transaction — and every notice of the outbox with how its delivery went, in the order it happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.fast import Tx, unjs

# Message types that are a resident writing (not a follow, a menu click …): kept as the conversation.
WRITTEN = ("text", "image", "voice", "video", "shortvideo", "location", "link")


@dataclass(frozen=True)
class Line:
    at: datetime
    # resident · bot (a passive reply) · notice (a message of the outbox)
    who: str
    kind: str
    text: str | None
    media_id: str | None = None
    # For notices: pending · sent · failed, and why it failed; the case it is about, when it says.
    delivery: str | None = None
    error: str | None = None
    case_number: str | None = None


async def for_resident(tx: Tx, openid: str, *, limit: int = 200) -> list[Line]:
    """The latest `limit` lines, oldest first (at one moment: what the resident said, the bot's answer, then
    the notices it led to)."""
    said: list[Line] = []
    for r in await tx.all(
        "SELECT received_at, msg_type, text, media_id, status, reply FROM inbound_messages "
        "WHERE openid = :openid ORDER BY id DESC LIMIT :limit",
        openid=openid,
        limit=limit,
    ):
        at = tx.dt(r["received_at"])
        reply = unjs(r["reply"]) if r["reply"] is not None else None
        if r["status"] == "replied" and reply:
            said.append(Line(at, "bot", "reply", reply[0]))
        if r["msg_type"] in WRITTEN:
            said.append(Line(at, "resident", r["msg_type"], r["text"], r["media_id"]))
    notices = []
    for r in await tx.all(
        "SELECT created_at, kind, payload, status, last_error FROM outbox WHERE openid = :openid "
        "ORDER BY id DESC LIMIT :limit",
        openid=openid,
        limit=limit,
    ):
        payload = unjs(r["payload"]) or {}
        text = payload.get("content") or payload.get("head") or ""
        notices.append(
            Line(
                tx.dt(r["created_at"]),
                "notice",
                r["kind"],
                text,
                None,
                r["status"],
                r["last_error"],
                payload.get("case_number"),
            )
        )
    lines = said[::-1] + notices[::-1]  # each oldest first; the sort below is stable
    lines.sort(key=lambda line: line.at)
    return lines[-limit:]


async def purge(tx: Tx, *, events_before: datetime, messages_before: datetime) -> int:
    """Events (follows, clicks …) once no retry can come; residents' messages once past the conversation's
    retention. Rows removed."""
    written = ", ".join(repr(kind) for kind in WRITTEN)
    return await tx.run(
        f"DELETE FROM inbound_messages WHERE (msg_type NOT IN ({written}) AND received_at < :events) "
        "OR received_at < :messages",
        events=tx.ts(events_before),
        messages=tx.ts(messages_before),
    )
