"""Residents as WeChat knows them: following or not, and when they last wrote (the service window).

The customer-service window is tracked per resident (bot/notify.py chooses the channel from it): a message opens
the long window (last_message_at), a follow, menu click or QR scan the short one (last_event_at); each resets the
count of customer-service messages sent since, which the outbox worker raises as it sends (`count_sent`).
"""

from __future__ import annotations

from datetime import datetime

from storage.fast import Tx

_SEEN = """
INSERT INTO residents (openid, subscribed, created_at, last_message_at) VALUES (:openid, :yes, :now, :now)
ON CONFLICT (openid) DO UPDATE SET last_message_at = excluded.last_message_at, cs_sent_since_message = 0"""
_SEEN_EVENT = """
INSERT INTO residents (openid, subscribed, created_at, last_event_at) VALUES (:openid, :yes, :now, :now)
ON CONFLICT (openid) DO UPDATE SET last_event_at = excluded.last_event_at, cs_sent_since_event = 0"""
_KNOWN = """
INSERT INTO residents (openid, subscribed, created_at) VALUES (:openid, :yes, :now)
ON CONFLICT (openid) DO NOTHING"""
# A follow opens the short (event) window, not the long one.
_SUBSCRIBED = """
INSERT INTO residents (openid, subscribed, created_at, last_event_at) VALUES (:openid, :subscribed, :now, :last)
ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed,
    last_event_at = COALESCE(excluded.last_event_at, residents.last_event_at),
    cs_sent_since_event = CASE WHEN excluded.subscribed THEN 0 ELSE residents.cs_sent_since_event END"""


async def seen(tx: Tx, openid: str, now: datetime, *, interaction: bool, kind: str = "message") -> None:
    """Record the resident (creating them on first contact) and, for a real interaction, the time.

    `kind` "message" (the resident wrote: the long window) or "event" (menu click, QR scan: the short one)."""
    if not interaction:
        await tx.run(_KNOWN, openid=openid, yes=True, now=tx.ts(now))
        return
    await tx.run(_SEEN_EVENT if kind == "event" else _SEEN, openid=openid, yes=True, now=tx.ts(now))


async def set_subscribed(tx: Tx, openid: str, subscribed: bool, now: datetime) -> None:
    """Follow (an interaction: it opens the service window) or unfollow."""
    await tx.run(
        _SUBSCRIBED, openid=openid, subscribed=subscribed, now=tx.ts(now), last=tx.ts(now) if subscribed else None
    )
