"""The scheduler tick's poll work: distribute, remind, close — durable poll_jobs rows, each fired once.

Claimed with a lease (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the store's BEGIN IMMEDIATE). Distribution
and reminders go in chunks of `polls.chunk_size` residents, one transaction each, every chunk renewing the
lease first and moving the row's done_through (the last resident or recipient id done) with its work: a crash
mid-way leaves what was done done, and whoever claims the row after the lease runs out carries on where it
stopped. Closing is one transaction that also marks the row done, only while the lease stands — so a restart
before (or during) the deadline closes it once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.config import Settings
from bot.services import polls
from bot.texts import Texts
from storage.fast import Store, Tx

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE poll_jobs SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM poll_jobs
    WHERE status = 'pending' AND fire_at <= :now AND (lease_until IS NULL OR lease_until < :now)
    ORDER BY fire_at, id LIMIT :limit{lock})
RETURNING id, poll_id, kind, done_through"""
_RENEW = """
UPDATE poll_jobs SET lease_until = :until WHERE id = :id AND lease_owner = :owner AND status = 'pending'
RETURNING done_through"""
TICK_SHARE = 0.9
_HAND_BACK = "UPDATE poll_jobs SET lease_owner = NULL, lease_until = NULL WHERE id = :id AND lease_owner = :owner"
_FINISH = """
UPDATE poll_jobs SET status = :status, fired_at = :now, lease_owner = NULL, lease_until = NULL
WHERE id = :id AND lease_owner = :owner AND status = 'pending'"""


@dataclass(frozen=True)
class Job:
    id: int
    poll_id: int
    kind: str
    done_through: int = 0


class PollWorker:
    def __init__(self, store: Store, clock: Clock, settings: Settings, texts: Texts, owner: str | None = None):
        self.store, self.clock, self.settings, self.texts = store, clock, settings, texts
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop_at = 0.0  # when the tick under way hands its work back (monotonic)

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.polls.lease_seconds)

    async def tick(self) -> int:
        """Fire every due job; how many were done (obsolete ones not counted)."""
        done = 0
        # Just under the interval, so the scheduler's next tick finds this one finished and carries on.
        self._stop_at = time.monotonic() + TICK_SHARE * self.settings.polls.tick_seconds
        try:
            while True:
                now = self.clock.now()
                async with self.store.write() as tx:
                    rows = await tx.all(
                        _CLAIM.format(lock="" if tx.is_sqlite else " FOR UPDATE SKIP LOCKED"),
                        owner=self.owner,
                        until=tx.ts(now + self._lease),
                        now=tx.ts(now),
                        limit=self.settings.polls.batch_size,
                    )
                jobs = [Job(r["id"], r["poll_id"], r["kind"], r["done_through"] or 0) for r in rows]
                for job in jobs:
                    done += await self.fire(job) == "done"
                if len(jobs) < self.settings.polls.batch_size or time.monotonic() >= self._stop_at:
                    return done
        except Exception:
            log.exception("poll tick failed")  # the rows stay; the next tick (or another instance) retries
            raise

    async def fire(self, job: Job) -> str | None:
        if job.kind == "close":
            async with self.store.write() as tx:
                return await self._close(tx, job)
        step = polls.distribute_some if job.kind == "distribute" else polls.remind_some
        # A tick does this much of a long distribution, then hands the row back for the next tick (any
        # instance's): a poll closing elsewhere meanwhile is not kept waiting, nor is the scheduler.
        while True:
            if time.monotonic() >= self._stop_at:
                async with self.store.write() as tx:
                    await tx.run(_HAND_BACK, id=job.id, owner=self.owner)
                return None
            now = self.clock.now()
            async with self.store.write() as tx:
                # done_through comes back with the renewed lease: where the last chunk, ours or a crashed
                # worker's, stopped.
                renewed = await tx.one(_RENEW, until=tx.ts(now + self._lease), id=job.id, owner=self.owner)
                if renewed is None:
                    return None  # another worker took the row over
                poll = await polls.get(tx, job.poll_id)
                if poll is None or not poll.is_open:
                    await self._finish(tx, job, "obsolete", now)
                    return "obsolete"
                count, done_through = await step(
                    tx,
                    poll,
                    after=renewed["done_through"] or 0,
                    now=now,
                    texts=self.texts,
                    clock=self.clock,
                    push=self.settings.push,
                    tz=self.settings.tz,
                    limit=self.settings.polls.chunk_size,
                )
                await tx.run("UPDATE poll_jobs SET done_through = :last WHERE id = :id", last=done_through, id=job.id)
                if count == 0:
                    if job.kind == "distribute":
                        await tx.run(
                            "UPDATE polls SET distributed_at = :now WHERE id = :id", now=tx.ts(now), id=poll.id
                        )
                    await self._finish(tx, job, "done", now)
                    return "done"

    async def _close(self, tx: Tx, job: Job) -> str | None:
        now = self.clock.now()
        poll = await polls.get(tx, job.poll_id)
        if poll is None or not poll.is_open:
            return "obsolete" if await self._finish(tx, job, "obsolete", now) else None
        if not await self._finish(tx, job, "done", now):
            return None
        await polls.close(
            tx,
            poll,
            by="system",
            now=now,
            texts=self.texts,
            clock=self.clock,
            creator_openid=await polls.creator_openid(tx, poll),
        )
        return "done"

    async def _finish(self, tx: Tx, job: Job, status: str, now: datetime) -> bool:
        return await tx.run(_FINISH, status=status, now=tx.ts(now), id=job.id, owner=self.owner) == 1
