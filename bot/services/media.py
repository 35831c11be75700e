"""A case's media (photos, voice, video): which files to fetch from WeChat, and where the fetched ones are.

WeChat keeps a resident's media for 3 days only. Whoever attaches a media id to a case calls `enqueue` in that
same transaction, so a case never holds a media id nobody will fetch, and nothing is fetched for a change that
rolled back. The download itself (leases, retries, the file store) is bot/media.py's business; the SQL it
needs lives here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.fast import Tx

KINDS = ("photo", "voice", "video")

_ENQUEUE = """
INSERT INTO case_media (case_id, media_id, kind, status, attempts, next_attempt_at, created_at)
VALUES (:case_id, :media_id, :kind, 'pending', 0, :now, :now)
ON CONFLICT (case_id, media_id) DO NOTHING"""


async def enqueue(tx: Tx, case_id: int, kind: str, media_ids: Iterable[str], *, now: datetime) -> int:
    """Media ids just attached to a case, to download; one attached twice is fetched once. How many are new."""
    if kind not in KINDS:
        raise ValueError(f"media kind must be one of {KINDS}, got {kind!r}")
    added = 0
    for media_id in dict.fromkeys(m for m in media_ids if m):
        added += await tx.run(_ENQUEUE, case_id=case_id, media_id=media_id, kind=kind, now=tx.ts(now))
    return added


# --- the download worker's side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    case_id: int
    case_number: str
    media_id: str
    kind: str
    attempts: int
    created_at: datetime


_DUE = """
SELECT 1 FROM case_media WHERE status = 'pending' AND next_attempt_at <= :now
AND (lease_until IS NULL OR lease_until <= :now) LIMIT 1"""

_CLAIM = """
UPDATE case_media SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM case_media
    WHERE status = 'pending' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)
    ORDER BY next_attempt_at, id LIMIT :limit{lock})
RETURNING id, case_id, media_id, kind, attempts, created_at"""


async def anything_due(tx: Tx, *, now: datetime) -> bool:
    return await tx.val(_DUE, now=tx.ts(now)) is not None


async def claim(tx: Tx, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Lease up to `limit` due rows to `owner`. Run it in its own short write transaction: on PostgreSQL rows
    another claimer is writing are skipped (SKIP LOCKED); on SQLite BEGIN IMMEDIATE lets one claimer in at a time."""
    rows = await tx.all(
        _CLAIM.format(lock="" if tx.is_sqlite else " FOR UPDATE SKIP LOCKED"),
        owner=owner,
        until=tx.ts(now + lease),
        now=tx.ts(now),
        limit=limit,
    )
    numbers: dict[int, str] = {}
    for case_id in {r["case_id"] for r in rows}:
        numbers[case_id] = await tx.val("SELECT number FROM cases WHERE id = :id", id=case_id)
    claimed = [
        Claimed(
            id=r["id"],
            case_id=r["case_id"],
            case_number=numbers[r["case_id"]],
            media_id=r["media_id"],
            kind=r["kind"],
            attempts=r["attempts"],
            created_at=tx.dt(r["created_at"]),
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda c: c.id)


_MINE = " WHERE id = :id AND status = 'pending' AND lease_owner = :owner"


async def stored(
    tx: Tx,
    row: Claimed,
    *,
    owner: str,
    now: datetime,
    path: str,
    size: int,
    content_type: str,
    sha256: str,
) -> bool:
    """Record the file; False when this worker's lease was taken over (then nothing is written)."""
    return (
        await tx.run(
            "UPDATE case_media SET status = 'stored', attempts = :attempts, path = :path, size = :size, "
            "content_type = :content_type, sha256 = :sha256, last_error = NULL, fetched_at = :now, "
            "lease_owner = NULL, lease_until = NULL" + _MINE,
            attempts=row.attempts + 1,
            path=path,
            size=size,
            content_type=content_type,
            sha256=sha256,
            now=tx.ts(now),
            id=row.id,
            owner=owner,
        )
        == 1
    )


async def retry(tx: Tx, row: Claimed, *, owner: str, attempts: int, at: datetime, error: str) -> bool:
    """Try again at `at`; False when the lease was lost."""
    return (
        await tx.run(
            "UPDATE case_media SET attempts = :attempts, next_attempt_at = :at, last_error = :error, "
            "lease_owner = NULL, lease_until = NULL" + _MINE,
            attempts=attempts,
            at=tx.ts(at),
            error=error,
            id=row.id,
            owner=owner,
        )
        == 1
    )


async def failed(tx: Tx, row: Claimed, *, owner: str, error: str) -> bool:
    """Give up for good; False when the lease was lost."""
    return (
        await tx.run(
            "UPDATE case_media SET status = 'failed', attempts = :attempts, last_error = :error, "
            "lease_owner = NULL, lease_until = NULL" + _MINE,
            attempts=row.attempts + 1,
            error=error,
            id=row.id,
            owner=owner,
        )
        == 1
    )


# --- what staff read -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFile:
    kind: str
    media_id: str
    status: str
    path: str | None
    size: int | None
    content_type: str | None
    sha256: str | None
    attempts: int
    last_error: str | None
    fetched_at: datetime | None


async def for_case(tx: Tx, case_id: int) -> list[MediaFile]:
    """The case's media in the order it was attached: stored ones with their file, others with their state."""
    rows = await tx.all(
        "SELECT kind, media_id, status, path, size, content_type, sha256, attempts, last_error, fetched_at "
        "FROM case_media WHERE case_id = :id ORDER BY id",
        id=case_id,
    )
    return [
        MediaFile(
            r["kind"],
            r["media_id"],
            r["status"],
            r["path"],
            r["size"],
            r["content_type"],
            r["sha256"],
            r["attempts"],
            r["last_error"],
            tx.dt(r["fetched_at"]),
        )
        for r in rows
    ]
