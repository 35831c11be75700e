"""Outbox delivery: services write OutboxMessage rows in their own transaction; a scheduler tick sends them.

One tick: claim due rows with a lease in a short write transaction, send each outside any transaction (a slow
WeChat must not hold a database lock), then record the outcome in a write transaction that only succeeds
while our lease still stands. A crashed worker's rows are claimed again once its lease runs out; a worker
whose lease was taken over records nothing. Rows of one resident go out in id order: a row is not claimed
while an earlier row of the same resident is waiting for a retry or leased by another worker.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, exists, or_, select, text, update
from sqlalchemy.orm import aliased

from bot.clock import Clock
from bot.config import OutboxSettings
from bot.wechat.api import WeChatAPI, WeChatAPIError
from storage.db import Database
from storage.fast import Tx, js
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
# Customer-service window closed (45015) or its quota spent (45047): the notice cannot go as a
# customer-service message. The template-message / 订阅通知 fallback belongs where these fail (see `_send`).
WINDOW_ERRCODES = frozenset({45015, 45047})
# Serializes claims on PostgreSQL so two workers never split one resident's rows between them (which would
# let a later row overtake an earlier one). Claims are one short UPDATE, so taking turns costs nothing.
_CLAIM_LOCK_KEY = 0x6F7574626F78  # "outbox"


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


@dataclass(frozen=True)
class _Outcome:
    # "sent" · "retry" (transient; try again later) · "failed" (give up)
    status: str
    error: str | None = None


SENT = _Outcome("sent")


class OutboxWorker:
    def __init__(self, db: Database, api: WeChatAPI, clock: Clock, settings: OutboxSettings, owner: str):
        self.db = db
        self.api = api
        self.clock = clock
        self.settings = settings
        self.owner = owner

    async def tick(self) -> int:
        """Deliver what is due; the number of messages sent."""
        if not await self._anything_due():
            return 0  # a read: an idle tick must not take the write lock every second
        rows = await self._claim()
        per_resident: dict[str, list[Row]] = {}
        for row in rows:
            per_resident.setdefault(row.openid, []).append(row)
        results = await asyncio.gather(
            *(self._deliver_in_order(rows) for rows in per_resident.values()), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return sum(r for r in results if isinstance(r, int))

    async def _anything_due(self) -> bool:
        o = OutboxMessage
        due = select(o.id).where(o.status == "pending", o.next_attempt_at <= self.clock.now()).limit(1)
        async with self.db.read() as session:
            return await session.scalar(due) is not None

    async def _claim(self) -> list[Row]:
        now = self.clock.now()
        candidate = aliased(OutboxMessage)
        earlier = aliased(OutboxMessage)
        held_back = exists().where(
            earlier.openid == candidate.openid,
            earlier.id < candidate.id,
            earlier.status == "pending",
            or_(earlier.next_attempt_at > now, earlier.lease_until > now),
        )
        due = (
            select(candidate.id)
            .where(
                candidate.status == "pending",
                candidate.next_attempt_at <= now,
                or_(candidate.lease_until.is_(None), candidate.lease_until <= now),
                ~held_back,
            )
            .order_by(candidate.id)
            .limit(self.settings.batch_size)
        )
        if not self.db.is_sqlite:
            # SKIP LOCKED: rows another transaction is writing are left for a later tick instead of waited on.
            due = due.with_for_update(skip_locked=True, of=candidate)
        o = OutboxMessage
        claim = (
            update(o)
            .where(o.id.in_(due))
            .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.settings.lease_seconds))
            .returning(o.id, o.openid, o.kind, o.payload, o.attempts)
        )
        async with self.db.write() as session:
            # SQLite needs no lock of ours: BEGIN IMMEDIATE already lets one writer in at a time.
            if not self.db.is_sqlite:
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY})
            rows = (await session.execute(claim)).all()
        return sorted(rows, key=lambda r: r.id)

    async def _deliver_in_order(self, rows: list[Row]) -> int:
        delivered = 0
        for i, row in enumerate(rows):
            outcome = await self._send(row)
            await self._record(row, outcome)
            if outcome is SENT:
                delivered += 1
            elif outcome.status == "retry":
                # Later rows of this resident wait until this one is through; they are not attempted now.
                await self._release(rows[i + 1 :])
                break
        return delivered

    async def _send(self, row: Row) -> _Outcome:
        try:
            await self._call_api(row.kind, row.openid, row.payload)
        except WeChatAPIError as exc:
            if exc.retryable:
                return _Outcome("retry", str(exc))
            # Hook for the later issue: when exc.errcode in WINDOW_ERRCODES, fall back to a template message
            # (or 订阅通知) here instead of giving up.
            log.warning("outbox %s to %s failed: %s", row.id, row.openid, exc)
            return _Outcome("failed", str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed row will not get better by waiting.
            log.error("outbox %s: unusable %s payload: %r", row.id, row.kind, exc)
            return _Outcome("failed", f"bad payload: {exc!r}")
        except Exception as exc:
            # Not WeChat's answer (a bug, a closed session): retrying is bounded by max_attempts.
            log.exception("outbox %s: unexpected error", row.id)
            return _Outcome("retry", f"{type(exc).__name__}: {exc}")
        return SENT

    async def _call_api(self, kind: str, openid: str, payload: dict[str, Any]) -> None:
        if kind == "text":
            await self.api.send_text(openid, payload["content"])
        elif kind == "menu":
            options = [(str(option_id), str(label)) for option_id, label in payload["options"]]
            await self.api.send_menu(openid, payload["head"], options, payload.get("tail", ""))
        elif kind == "template":
            await self.api.send_template(openid, payload["template_id"], payload["data"], payload.get("url"))
        else:
            raise ValueError(f"unknown outbox kind {kind!r}")

    async def _record(self, row: Row, outcome: _Outcome) -> None:
        now = self.clock.now()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "lease_owner": None, "lease_until": None}
        if outcome is SENT:
            values.update(status="sent", sent_at=now, last_error=None)
        elif outcome.status == "retry" and attempts < self.settings.max_attempts:
            delay = min(self.settings.backoff_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            values.update(next_attempt_at=now + timedelta(seconds=delay), last_error=outcome.error)
        else:
            error = outcome.error if outcome.status == "failed" else f"{outcome.error} (gave up after {attempts} tries)"
            values.update(status="failed", last_error=error)
        o = OutboxMessage
        async with self.db.write() as session:
            result = await session.execute(
                update(o).where(o.id == row.id, o.lease_owner == self.owner, o.status == "pending").values(**values)
            )
        if result.rowcount == 0:
            log.warning("outbox %s: lease lost to another worker; %s not recorded", row.id, outcome.status)

    async def _release(self, rows: list[Row]) -> None:
        if not rows:
            return
        o = OutboxMessage
        async with self.db.write() as session:
            await session.execute(
                update(o)
                .where(o.id.in_([r.id for r in rows]), o.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )
