"""The outbox's front: services add the messages a change must send, in the transaction of that change.
Delivery (channel, retries, leases) is bot/notify.py's business."""

from __future__ import annotations

from datetime import datetime

from bot.clock import Clock
from bot.services.residents import is_detached
from storage.fast import Tx, js

_ENQUEUE = """
INSERT INTO outbox (openid, kind, payload, status, attempts, next_attempt_at, created_at)
VALUES (:openid, :kind, :payload, 'pending', 0, :due, :now) RETURNING id"""


async def enqueue(
    tx: Tx, clock: Clock, openid: str, kind: str, payload: dict, *, not_before: datetime | None = None
) -> int | None:
    """Add a pending row in the caller's transaction: sent only if that transaction commits. Its id — or None
    for the stand-in of a detached resident (bot/services/forget.py), to whom nothing is ever sent.

    Payloads: "text" {"content"}; "menu" {"head", "options": [[id, label], …], "tail"};
    "template" {"template_id", "data", "url"?}. `not_before` holds the row back, e.g. so a continuation
    does not overtake the passive reply WeChat has not yet shown.

    A "text" or "menu" row goes as a customer-service message while the resident's window is open; otherwise
    as the template message configured for its notice (settings [push]), which needs the optional payload keys
    of `template_fields`: "notice" (the kind, e.g. "accepted"), "case_number", "status_text", "url".
    """
    if is_detached(openid):
        return None
    now = clock.now()
    due = max(now, not_before) if not_before else now
    return await tx.val(_ENQUEUE, openid=openid, kind=kind, payload=js(payload), due=tx.ts(due), now=tx.ts(now))


def template_fields(
    *,
    notice: str | None = None,
    case_number: str | None = None,
    status_text: str | None = None,
    url: str | None = None,
) -> dict:
    """What a template message needs when the notice cannot go as a customer-service message; unset ones left out."""
    fields = {"notice": notice, "case_number": case_number, "status_text": status_text, "url": url}
    return {key: value for key, value in fields.items() if value}


async def enqueue_text(
    tx: Tx,
    clock: Clock,
    openid: str,
    text: str,
    *,
    not_before: datetime | None = None,
    notice: str | None = None,
    case_number: str | None = None,
    status_text: str | None = None,
    url: str | None = None,
) -> int | None:
    """A text; with `case_number` (and `notice`, `status_text`, `url`) it can fall back to a template message."""
    payload = {
        "content": text,
        **template_fields(notice=notice, case_number=case_number, status_text=status_text, url=url),
    }
    return await enqueue(tx, clock, openid, "text", payload, not_before=not_before)
