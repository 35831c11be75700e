"""Cases: creation from a complaint, the ledger, and what residents and staff may read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.models import Case, CaseCounter, CaseEvent
from storage.upsert import insert_for

PENDING = "pending"


@dataclass(frozen=True)
class NewComplaint:
    openid: str
    category: str
    place_label: str
    latitude: float | None
    longitude: float | None
    description: str
    photo_media_ids: list[str]
    voice_media_ids: list[str]
    contact_phone: str | None


async def next_number(session: AsyncSession, prefix: str, local_day: str) -> str:
    """XF20261125-0001: the day in the office's time zone and a per-day sequence that concurrent
    submissions cannot share (one atomic upsert-increment)."""
    stmt = insert_for(session, CaseCounter).values(day=local_day, last=1)
    stmt = stmt.on_conflict_do_update(index_elements=["day"], set_={"last": CaseCounter.last + 1})
    seq = await session.scalar(stmt.returning(CaseCounter.last))
    return f"{prefix}{local_day}-{seq:04d}"


async def submit_complaint(
    session: AsyncSession, new: NewComplaint, *, now: datetime, tz: ZoneInfo, prefix: str, acceptance_days: int
) -> Case:
    number = await next_number(session, prefix, now.astimezone(tz).strftime("%Y%m%d"))
    case = Case(
        number=number,
        openid=new.openid,
        category=new.category,
        place_label=new.place_label,
        latitude=new.latitude,
        longitude=new.longitude,
        description=new.description,
        photo_media_ids=list(new.photo_media_ids),
        voice_media_ids=list(new.voice_media_ids),
        contact_phone=new.contact_phone,
        status=PENDING,
        created_at=now,
        updated_at=now,
        accept_due_at=now + timedelta(days=acceptance_days),
    )
    case.events.append(
        CaseEvent(at=now, actor="resident", action="submitted", from_status=None, to_status=PENDING, note=None)
    )
    session.add(case)
    await session.flush()
    return case


def normalize_number(raw: str, prefix: str) -> str:
    """What residents type varies: lower case, spaces, no dash, no prefix. XF20261125-0001 in, out."""
    text = re.sub(r"[\s\-－—_]", "", raw).upper()
    if text.startswith(prefix.upper()):
        text = text[len(prefix) :]
    if re.fullmatch(r"\d{9,}", text):
        return f"{prefix}{text[:8]}-{text[8:].zfill(4)}"
    return raw.strip().upper()


async def for_resident(session: AsyncSession, openid: str, limit: int = 10) -> list[Case]:
    rows = await session.scalars(
        select(Case).where(Case.openid == openid).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit)
    )
    return list(rows)


async def get_for_resident(session: AsyncSession, openid: str, number: str) -> Case | None:
    """Only the resident's own case: someone else's number reads as not found."""
    return await session.scalar(
        select(Case).where(Case.number == number, Case.openid == openid).options(selectinload(Case.events))
    )


async def get(session: AsyncSession, number: str) -> Case | None:
    return await session.scalar(select(Case).where(Case.number == number).options(selectinload(Case.events)))


async def listing(session: AsyncSession, *, status: str | None = None, limit: int = 50) -> list[Case]:
    stmt = select(Case).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Case.status == status)
    return list(await session.scalars(stmt))
