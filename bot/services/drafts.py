"""Half-finished dialogs (drafts), one per resident, saved after every step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DialogState


async def get(session: AsyncSession, openid: str) -> DialogState | None:
    return await session.scalar(select(DialogState).where(DialogState.openid == openid))


async def begin(session: AsyncSession, openid: str, dialog: str, now: datetime) -> DialogState:
    state = await get(session, openid)
    if state is not None:
        await session.delete(state)
        await session.flush()
    state = DialogState(
        openid=openid,
        dialog=dialog,
        step=0,
        mode="step",
        editing=False,
        data={},
        failed_tries=0,
        needs_human=False,
        started_at=now,
        updated_at=now,
    )
    session.add(state)
    return state


async def discard(session: AsyncSession, state: DialogState) -> None:
    await session.delete(state)


async def waiting_for_staff(session: AsyncSession, limit: int = 100) -> list[DialogState]:
    """Drafts whose resident asked for a person (人工), oldest first — for staff to pick up."""
    rows = await session.scalars(
        select(DialogState).where(DialogState.needs_human.is_(True)).order_by(DialogState.updated_at).limit(limit)
    )
    return list(rows)
