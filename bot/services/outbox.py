"""The outbox's front: services add the messages a change must send, in the transaction of that change.
Delivery (channel, retries, leases) is bot/notify.py's business."""

from __future__ import annotations

from datetime import datetime

from bot.clock import Clock
from storage.fast import Tx, js

_ENQUEUE = """
INSERT INTO outbox (openid, kind, payload, status, attempts, next_attempt_at, created_at)
VALUES (:openid, :kind, :payload, 'pending', 0, :due, :now) RETURNING id"""


async def enqueue(
    tx: Tx, clock: Clock, openid: str, kind: str, payload: dict, *, not_before: datetime | None = None
) -> int:
    """Add a pending row in the caller's transaction: sent only if that transaction commits. Its id.

    Payloads: "text" {"content"}; "menu" {"head", "options": [[id, label], …], "tail"};
    "template" {"template_id", "data", "url"?}. `not_before` holds the row back, e.g. so a continuation
    does not overtake the passive reply WeChat has not yet shown.
    """
    now = clock.now()
    due = max(now, not_before) if not_before else now
    return await tx.val(_ENQUEUE, openid=openid, kind=kind, payload=js(payload), due=tx.ts(due), now=tx.ts(now))


async def enqueue_text(tx: Tx, clock: Clock, openid: str, text: str, *, not_before: datetime | None = None) -> int:
    return await enqueue(tx, clock, openid, "text", {"content": text}, not_before=not_before)
