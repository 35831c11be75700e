"""Residents as WeChat knows them: following or not, and when they last wrote (the service window)."""

from __future__ import annotations

from datetime import datetime

from storage.fast import Tx

_SEEN = """
INSERT INTO residents (openid, subscribed, created_at, last_message_at) VALUES (:openid, :yes, :now, :now)
ON CONFLICT (openid) DO UPDATE SET last_message_at = excluded.last_message_at"""
_KNOWN = """
INSERT INTO residents (openid, subscribed, created_at) VALUES (:openid, :yes, :now)
ON CONFLICT (openid) DO NOTHING"""
_SUBSCRIBED = """
INSERT INTO residents (openid, subscribed, created_at, last_message_at) VALUES (:openid, :subscribed, :now, :last)
ON CONFLICT (openid) DO UPDATE SET subscribed = excluded.subscribed,
    last_message_at = COALESCE(excluded.last_message_at, residents.last_message_at)"""


async def seen(tx: Tx, openid: str, now: datetime, *, interaction: bool) -> None:
    """Record the resident (creating them on first contact) and, for a real interaction, the time."""
    await tx.run(_SEEN if interaction else _KNOWN, openid=openid, yes=True, now=tx.ts(now))


async def set_subscribed(tx: Tx, openid: str, subscribed: bool, now: datetime) -> None:
    """Follow (an interaction: it opens the service window) or unfollow."""
    await tx.run(
        _SUBSCRIBED, openid=openid, subscribed=subscribed, now=tx.ts(now), last=tx.ts(now) if subscribed else None
    )
