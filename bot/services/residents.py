"""Residents as WeChat knows them: following or not, and when they last wrote (the service window).

The customer-service window is tracked per resident (bot/notify.py chooses the channel from it): a message opens
the long window (last_message_at), a follow, menu click or QR scan the short one (last_event_at); each resets the
count of customer-service messages sent since, which the outbox worker raises as it sends (`count_sent`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from bot.config import PushSettings
from storage.fast import Tx

# Where a row must outlive a resident who was detached (bot/services/forget.py) it names them by this prefix and
# its own id instead: never an openid WeChat issues (letters, digits, - and _), so nothing is queued to one.
DETACHED_PREFIX = "~"


def is_detached(openid: str) -> bool:
    return openid.startswith(DETACHED_PREFIX)


_SEEN = """
INSERT INTO residents (openid, subscribed, created_at, last_message_at) VALUES (:openid, :yes, :now, :now)
ON CONFLICT (openid) DO UPDATE SET last_message_at = excluded.last_message_at, cs_sent_since_message = 0
RETURNING is_gridworker, polls_waiting"""
_SEEN_EVENT = """
INSERT INTO residents (openid, subscribed, created_at, last_event_at) VALUES (:openid, :yes, :now, :now)
ON CONFLICT (openid) DO UPDATE SET last_event_at = excluded.last_event_at, cs_sent_since_event = 0
RETURNING is_gridworker, polls_waiting"""
_KNOWN = """
INSERT INTO residents (openid, subscribed, created_at) VALUES (:openid, :yes, :now)
ON CONFLICT (openid) DO NOTHING"""
# A follow opens the short (event) window, not the long one.
_SUBSCRIBED = """
INSERT INTO residents (openid, subscribed, created_at, last_event_at) VALUES (:openid, :subscribed, :now, :last)
ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed,
    last_event_at = COALESCE(excluded.last_event_at, residents.last_event_at),
    cs_sent_since_event = CASE WHEN excluded.subscribed THEN 0 ELSE residents.cs_sent_since_event END"""


class Seen(NamedTuple):
    """What the router needs to know of the resident, read back from the row the visit writes anyway."""

    is_gridworker: bool = False
    # Polls put to them while their window was closed, not yet mentioned.
    polls_waiting: int = 0


async def seen(tx: Tx, openid: str, now: datetime, *, interaction: bool, kind: str = "message") -> Seen:
    """Record the resident (creating them on first contact) and, for a real interaction, the time.

    `kind` "message" (the resident wrote: the long window) or "event" (menu click, QR scan: the short one)."""
    if not interaction:
        await tx.run(_KNOWN, openid=openid, yes=True, now=tx.ts(now))
        return Seen()
    row = await tx.one(_SEEN_EVENT if kind == "event" else _SEEN, openid=openid, yes=True, now=tx.ts(now))
    return Seen(bool(row["is_gridworker"]), row["polls_waiting"] or 0) if row else Seen()


async def set_subscribed(tx: Tx, openid: str, subscribed: bool, now: datetime) -> None:
    """Follow (an interaction: it opens the service window) or unfollow."""
    await tx.run(
        _SUBSCRIBED, openid=openid, subscribed=subscribed, now=tx.ts(now), last=tx.ts(now) if subscribed else None
    )


def window_state(
    last_message_at: datetime | None,
    last_event_at: datetime | None,
    sent_since_message: int,
    sent_since_event: int,
    *,
    now: datetime,
    push: PushSettings,
) -> str:
    """ "open" while a customer-service message may go (a window and its quota left), else "closed"."""
    by_message = last_message_at is not None and now < last_message_at + timedelta(hours=push.window_hours)
    by_event = last_event_at is not None and now < last_event_at + timedelta(seconds=push.event_window_seconds)
    if (by_message and sent_since_message < push.window_quota) or (
        by_event and sent_since_event < push.event_window_quota
    ):
        return "open"
    return "closed"


async def window(tx: Tx, openid: str, *, now: datetime, push: PushSettings) -> str:
    """The resident's customer-service window as the outbox will judge it: open, closed, or unknown (no record)."""
    r = await tx.one(
        "SELECT last_message_at, last_event_at, cs_sent_since_message, cs_sent_since_event FROM residents "
        "WHERE openid = :openid",
        openid=openid,
    )
    return "unknown" if r is None else window_of_row(tx, r, now=now, push=push)


def window_of_row(tx: Tx, r, *, now: datetime, push: PushSettings) -> str:
    """`window_state` of a row holding last_message_at, last_event_at, cs_sent_since_message, cs_sent_since_event."""
    return window_state(
        tx.dt(r["last_message_at"]),
        tx.dt(r["last_event_at"]),
        r["cs_sent_since_message"],
        r["cs_sent_since_event"],
        now=now,
        push=push,
    )
