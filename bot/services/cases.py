"""Cases: creation from a complaint, the ledger, and what residents and staff may read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.services import media
from storage.fast import Tx, js, unjs

PENDING = "pending"
# Statuses in which a case is still being worked on (a new complaint may belong to it).
OPEN_STATUSES = ("pending", "accepted", "assigned", "in_progress", "replied", "reopened")
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"


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
    video_media_ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerEntry:
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


@dataclass
class Case:
    id: int
    number: str
    openid: str | None
    category: str
    place_label: str
    latitude: float | None
    longitude: float | None
    description: str
    photo_media_ids: list[str]
    voice_media_ids: list[str]
    video_media_ids: list[str]
    links: list[str]
    contact_phone: str | None
    status: str
    created_at: datetime
    accept_due_at: datetime | None
    tier: str | None = None
    lead_unit: str | None = None
    events: list[LedgerEntry] = field(default_factory=list)


_NEXT = """
INSERT INTO case_counters (day, last) VALUES (:day, 1)
ON CONFLICT (day) DO UPDATE SET last = case_counters.last + 1 RETURNING last"""


async def next_number(tx: Tx, prefix: str, local_day: str) -> str:
    """XF20261125-0001: the day in the office's time zone and a per-day sequence that concurrent
    submissions cannot share (one atomic upsert-increment)."""
    seq = await tx.val(_NEXT, day=local_day)
    return f"{prefix}{local_day}-{seq:04d}"


_INSERT_CASE = """
INSERT INTO cases (number, openid, category, place_label, latitude, longitude, description, photo_media_ids,
    voice_media_ids, video_media_ids, links, contact_phone, status, created_at, updated_at, accept_due_at, tier,
    grid_id)
VALUES (:number, :openid, :category, :place_label, :latitude, :longitude, :description, :photos, :voices,
    :videos, :links, :phone, :status, :now, :now, :accept_due_at, :tier,
    (SELECT grid_id FROM residents WHERE openid = :resident))
RETURNING id"""
_INSERT_EVENT = """
INSERT INTO case_events (case_id, at, actor, action, from_status, to_status, note)
VALUES (:case_id, :at, :actor, :action, :from_status, :to_status, :note)"""


async def add_ledger(
    tx: Tx,
    case_id: int,
    now: datetime,
    actor: str,
    action: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
) -> None:
    """One ledger (台账) entry: who did what to a case, when, and why."""
    await tx.run(
        _INSERT_EVENT,
        case_id=case_id,
        at=tx.ts(now),
        actor=actor,
        action=action,
        from_status=from_status,
        to_status=to_status,
        note=note,
    )


async def submit_complaint(
    tx: Tx,
    new: NewComplaint,
    *,
    now: datetime,
    tz: ZoneInfo,
    prefix: str,
    acceptance_days: int,
    asked_for_staff: bool = False,
    related: list[str] = (),
    tier: str | None = None,
) -> str:
    """Store the complaint as a pending case with its first ledger entry; its number. A resident who asked
    for a person (人工) while filing has that on the ledger, where staff see it."""
    number = await next_number(tx, prefix, now.astimezone(tz).strftime("%Y%m%d"))
    case_id = await tx.val(
        _INSERT_CASE,
        number=number,
        openid=new.openid,
        resident=new.openid,  # its own parameter: PostgreSQL types a parameter once, and this one is text
        category=new.category,
        place_label=new.place_label,
        latitude=new.latitude,
        longitude=new.longitude,
        description=new.description,
        photos=js(list(new.photo_media_ids)),
        voices=js(list(new.voice_media_ids)),
        videos=js(list(new.video_media_ids)),
        links=js(list(new.links)),
        phone=new.contact_phone,
        status=PENDING,
        now=tx.ts(now),
        accept_due_at=tx.ts(now + timedelta(days=acceptance_days)),
        tier=tier,
    )
    await add_ledger(tx, case_id, now, "resident", "submitted", to_status=PENDING)
    # WeChat keeps media for 3 days: the files are fetched into the store (bot/media.py).
    await media.enqueue(tx, case_id, "photo", new.photo_media_ids, now=now)
    await media.enqueue(tx, case_id, "voice", new.voice_media_ids, now=now)
    await media.enqueue(tx, case_id, "video", new.video_media_ids, now=now)
    if asked_for_staff:
        await add_ledger(tx, case_id, now, "resident", "human_requested")
    if related:  # perhaps the same matter: a link for staff, who decide whether to merge
        await add_ledger(tx, case_id, now, "system", "possible_repeat", note="、".join(related))
    return number


# Prefix, a date (20yymmdd — so a mobile number is never read as a case number), sequence.
_CASE_NUMBER = re.compile(r"(?<![0-9])([A-Za-z]{0,4})\s*(20\d{6})\s*[-－—_]?\s*(\d{1,6})(?![0-9])")


def find_number(text: str, prefix: str) -> str | None:
    """A case number anywhere in what the resident typed ("查询：xf20261125-1", "案件XF202611250001")."""
    match = _CASE_NUMBER.search(text)
    if match is None or (match.group(1) and match.group(1).upper() != prefix.upper()):
        return None
    return f"{prefix}{match.group(2)}-{int(match.group(3)):04d}"


_LATEST_PENDING = """
SELECT id, number, photo_media_ids FROM cases
WHERE openid = :openid AND status = :status AND created_at >= :since ORDER BY id DESC LIMIT 1"""


async def recent_pending(tx: Tx, openid: str, *, now: datetime, within: timedelta, lock: bool = False):
    """The resident's case submitted within `within`, still pending: what a follow-up message is about."""
    sql = _LATEST_PENDING + (" FOR UPDATE" if lock and not tx.is_sqlite else "")  # SQLite: BEGIN IMMEDIATE
    return await tx.one(sql, openid=openid, status=PENDING, since=tx.ts(now - within))


async def add_photo_to_recent(tx: Tx, openid: str, media_id: str, *, now: datetime, within: timedelta) -> str | None:
    """A photo sent just after submitting belongs to the case just submitted; its number (None if this
    resident has no pending case that recent)."""
    row = await recent_pending(tx, openid, now=now, within=within, lock=True)
    if row is None:
        return None
    photos = [*unjs(row["photo_media_ids"]), media_id]
    await tx.run(
        "UPDATE cases SET photo_media_ids = :photos, updated_at = :now WHERE id = :id",
        photos=js(photos),
        now=tx.ts(now),
        id=row["id"],
    )
    await add_ledger(tx, row["id"], now, "resident", "photo_added")
    await media.enqueue(tx, row["id"], "photo", [media_id], now=now)
    return row["number"]


async def add_note_to_recent(tx: Tx, openid: str, text: str, *, now: datetime, within: timedelta) -> str | None:
    """Something the resident adds just after submitting goes on that case's ledger; its number, or None."""
    row = await recent_pending(tx, openid, now=now, within=within)
    if row is None:
        return None
    await add_ledger(tx, row["id"], now, "resident", "resident_note", note=text)
    return row["number"]


@dataclass(frozen=True)
class Similar:
    number: str
    created_at: datetime


async def similar_own(tx: Tx, openid: str, category: str, *, now: datetime, within: timedelta) -> Similar | None:
    """The resident's own open case of the same category from the last `within`: maybe the same matter."""
    row = await tx.one(
        f"SELECT number, created_at FROM cases WHERE openid = :openid AND category = :category "
        f"AND status IN {_OPEN_SQL} AND created_at >= :since ORDER BY id DESC LIMIT 1",
        openid=openid,
        category=category,
        since=tx.ts(now - within),
    )
    return None if row is None else Similar(row["number"], tx.dt(row["created_at"]))


# About a hundred metres: reports pinned this close together are about the same place.
NEARBY_DEGREES = 0.001


_ELSEWHERE = (
    "SELECT number, id FROM cases WHERE category = :category AND {where} AND (openid IS NULL OR openid <> :openid) "
    f"AND status IN {_OPEN_SQL} AND created_at >= :since ORDER BY id DESC LIMIT :limit"
)


async def similar_elsewhere(
    tx: Tx, new: NewComplaint, *, now: datetime, within: timedelta, limit: int = 5
) -> list[str]:
    """Other residents' open cases of the same category at the same place (same address, or pinned within
    about a hundred metres): for staff to link or merge. Two indexed lookups rather than one OR."""
    common = {"category": new.category, "openid": new.openid, "since": tx.ts(now - within), "limit": limit}
    rows = list(await tx.all(_ELSEWHERE.format(where="place_label = :label"), label=new.place_label, **common))
    if new.latitude is not None and new.longitude is not None:
        rows += await tx.all(
            _ELSEWHERE.format(where="latitude BETWEEN :lat_lo AND :lat_hi AND longitude BETWEEN :lng_lo AND :lng_hi"),
            lat_lo=new.latitude - NEARBY_DEGREES,
            lat_hi=new.latitude + NEARBY_DEGREES,
            lng_lo=new.longitude - NEARBY_DEGREES,
            lng_hi=new.longitude + NEARBY_DEGREES,
            **common,
        )
    newest_first = sorted({r["id"]: r["number"] for r in rows}.items(), reverse=True)
    return [number for _id, number in newest_first][:limit]


# What a later report adds to a case: the lists it extends, by media kind.
_MEDIA_COLUMNS = {"photo": "photo_media_ids", "voice": "voice_media_ids", "video": "video_media_ids"}


async def add_to_case(
    tx: Tx, number: str, openid: str, *, text: str, media_ids: dict[str, list[str]], now: datetime
) -> bool:
    """A new report of the same matter, added to the resident's own case while it is still open (text on the
    ledger, photos / voice / video on the case and queued for download). False if it is no longer open."""
    lock = "" if tx.is_sqlite else " FOR UPDATE"
    row = await tx.one(
        f"SELECT id, photo_media_ids, voice_media_ids, video_media_ids FROM cases "
        f"WHERE number = :number AND openid = :openid AND status IN {_OPEN_SQL}{lock}",
        number=number,
        openid=openid,
    )
    if row is None:
        return False
    for kind, column in _MEDIA_COLUMNS.items():
        if ids := media_ids.get(kind):
            await tx.run(
                f"UPDATE cases SET {column} = :ids, updated_at = :now WHERE id = :id",
                ids=js([*unjs(row[column]), *ids]),
                now=tx.ts(now),
                id=row["id"],
            )
            await media.enqueue(tx, row["id"], kind, ids, now=now)
    await add_ledger(tx, row["id"], now, "resident", "resident_note", note=text)
    return True


async def to_rate(tx: Tx, openid: str, *, now: datetime, within: timedelta) -> str | None:
    """The resident's most recently closed case not yet rated, closed within `within`: what "1" answers. A case
    closed by the resident's commitment (息诉罢访) was not asked to be rated."""
    return await tx.val(
        "SELECT number FROM cases WHERE openid = :openid AND status = 'closed' AND rated_at IS NULL "
        "AND closed_at >= :since AND commitment_at IS NULL ORDER BY closed_at DESC LIMIT 1",
        openid=openid,
        since=tx.ts(now - within),
    )


async def closed_at(tx: Tx, number: str) -> datetime | None:
    return tx.dt(await tx.val("SELECT closed_at FROM cases WHERE number = :number", number=number))


async def rate(tx: Tx, number: str, openid: str, *, score: int, label: str, comment: str | None, now: datetime) -> bool:
    """Record the resident's rating of their closed case, once."""
    case_id = await tx.val(
        "UPDATE cases SET rating = :score, rating_comment = :comment, rated_at = :now, updated_at = :now "
        "WHERE number = :number AND openid = :openid AND status = 'closed' AND rated_at IS NULL RETURNING id",
        score=score,
        comment=comment,
        now=tx.ts(now),
        number=number,
        openid=openid,
    )
    if case_id is None:
        return False
    await add_ledger(tx, case_id, now, "resident", "rated", note=f"{label}：{comment}" if comment else label)
    return True


_CASE_COLUMNS = """id, number, openid, category, place_label, latitude, longitude, description, photo_media_ids,
    voice_media_ids, video_media_ids, links, contact_phone, status, created_at, accept_due_at, tier, lead_unit"""


def _case(tx: Tx, row) -> Case:
    return Case(
        id=row["id"],
        number=row["number"],
        openid=row["openid"],
        category=row["category"],
        place_label=row["place_label"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        description=row["description"],
        photo_media_ids=unjs(row["photo_media_ids"]),
        voice_media_ids=unjs(row["voice_media_ids"]),
        video_media_ids=unjs(row["video_media_ids"]),
        links=unjs(row["links"]),
        contact_phone=row["contact_phone"],
        status=row["status"],
        created_at=tx.dt(row["created_at"]),
        accept_due_at=tx.dt(row["accept_due_at"]),
        tier=row["tier"],
        lead_unit=row["lead_unit"],
    )


async def _with_ledger(tx: Tx, case: Case) -> Case:
    rows = await tx.all(
        "SELECT at, actor, action, from_status, to_status, note FROM case_events WHERE case_id = :id ORDER BY id",
        id=case.id,
    )
    case.events = [
        LedgerEntry(tx.dt(r["at"]), r["actor"], r["action"], r["from_status"], r["to_status"], r["note"]) for r in rows
    ]
    return case


async def for_resident(tx: Tx, openid: str, limit: int = 10) -> list[Case]:
    rows = await tx.all(
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE openid = :openid ORDER BY created_at DESC, id DESC LIMIT :limit",
        openid=openid,
        limit=limit,
    )
    return [_case(tx, r) for r in rows]


async def get_for_resident(tx: Tx, openid: str, number: str) -> Case | None:
    """Only the resident's own case: someone else's number reads as not found."""
    row = await tx.one(
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE number = :number AND openid = :openid", number=number, openid=openid
    )
    return None if row is None else await _with_ledger(tx, _case(tx, row))


async def get(tx: Tx, number: str) -> Case | None:
    row = await tx.one(f"SELECT {_CASE_COLUMNS} FROM cases WHERE number = :number", number=number)
    return None if row is None else await _with_ledger(tx, _case(tx, row))


async def listing(tx: Tx, *, status: str | None = None, limit: int = 50) -> list[Case]:
    where = "WHERE status = :status" if status else ""
    rows = await tx.all(
        f"SELECT {_CASE_COLUMNS} FROM cases {where} ORDER BY created_at DESC, id DESC LIMIT :limit",
        status=status,
        limit=limit,
    )
    return [_case(tx, r) for r in rows]
