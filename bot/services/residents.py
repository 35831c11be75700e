"""Residents as WeChat knows them: following or not, and when they last wrote (the service window)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Resident
from storage.upsert import insert_for


async def seen(session: AsyncSession, openid: str, now: datetime, *, interaction: bool) -> None:
    """Record the resident (creating them on first contact) and, for a real interaction, the time."""
    values = {"openid": openid, "subscribed": True, "created_at": now, "last_message_at": now if interaction else None}
    stmt = insert_for(session, Resident).values(**values)
    if interaction:
        stmt = stmt.on_conflict_do_update(index_elements=["openid"], set_={"last_message_at": now})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["openid"])
    await session.execute(stmt)


async def set_subscribed(session: AsyncSession, openid: str, subscribed: bool, now: datetime) -> None:
    await seen(session, openid, now, interaction=subscribed)
    await session.execute(update(Resident).where(Resident.openid == openid).values(subscribed=subscribed))
