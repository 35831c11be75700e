"""Intake: each inbound message handled exactly once, one at a time per resident, within WeChat's deadline.

- Exactly once: the dedupe key (MsgId, or FromUserName + CreateTime for events) is a unique column, written in
  the same transaction as everything the message changed. A retry that arrives while the first attempt still
  runs joins that attempt; one that arrives later finds the stored answer.
- Deadline: the webhook waits at most the reply budget. If the work is not done by then, the message is marked
  deferred and its answer goes out as a customer-service message through the outbox instead of the reply.
- Order: a per-resident lock in the process, and on PostgreSQL a per-resident advisory lock in the database, so
  several instances behind one load balancer still handle one resident's messages one at a time; different
  residents run in parallel (on SQLite their write transactions still take turns, which is what keeps them
  correct).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from bot import metrics
from bot.clock import Clock
from bot.config import Settings
from bot.context import Ctx
from bot.locks import KeyedLocks
from bot.services import conversation, drafts
from bot.services.outbox import enqueue_text
from bot.texts import Texts
from bot.wechat.inbound import Inbound
from bot.wechat.protocol import split_text
from storage.fast import Conflict, Store, js, unjs

log = logging.getLogger(__name__)

CONTINUATION_DELAY = timedelta(seconds=2)
# Outbox rows older than this are stuck (WeChat refusing them), not in flight: they no longer hold back answers.
QUEUED_ANSWER_HORIZON = timedelta(minutes=10)

Handler = Callable[[Ctx, Inbound], Awaitable[str | None]]


@dataclass
class _Job:
    msg: Inbound
    task: asyncio.Task | None = None
    # "computing" until the handler has produced its answer; then "committing".
    phase: str = "computing"
    # Set by a webhook request that gave up waiting: the answer must go through the outbox.
    deferred: bool = False


class Intake:
    def __init__(self, store: Store, handler: Handler, *, clock: Clock, settings: Settings, texts: Texts):
        self.store = store
        self.handler = handler
        self.clock = clock
        self.settings = settings
        self.texts = texts
        self.locks = KeyedLocks()
        self._inflight: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task] = set()

    async def process(self, msg: Inbound, budget: float) -> str | None:
        """The passive reply text, or None to answer `success` (nothing, or the answer comes later)."""
        key = msg.dedupe_key
        job = self._inflight.get(key)
        if job is None:
            job = _Job(msg)
            self._inflight[key] = job
            job.task = asyncio.create_task(self._run(job))
            self._tasks.add(job.task)
            job.task.add_done_callback(lambda t, k=key: (self._inflight.pop(k, None), self._tasks.discard(t)))
        try:
            return await asyncio.wait_for(asyncio.shield(job.task), budget)
        except TimeoutError:
            if job.phase == "committing":
                # The answer exists and is being written as a passive reply; a short wait beats losing it.
                return await asyncio.shield(job.task)
            if not job.deferred:  # a retry that joined this job and also gave up is the same fallback
                metrics.REPLY_DEFERRED.inc()
            job.deferred = True
            log.warning("reply budget exceeded; answer of message %s deferred to the outbox", _ref(key))
            return None

    async def _run(self, job: _Job) -> str | None:
        msg = job.msg
        async with self.locks.hold(msg.openid):
            for _attempt in range(2):
                try:
                    with metrics.counted_on_commit():
                        return await self._handle_once(job)
                except Conflict:
                    # Our effects rolled back. If another instance stored this message first, answer as it
                    # did; if some other unique row collided, redo the work once on fresh data.
                    async with self.store.read() as tx:
                        row = await tx.one(_STORED, key=msg.dedupe_key)
                    if row is not None:
                        return _answer_of(row)
                except Exception:
                    metrics.HANDLING_ERRORS.inc()
                    log.exception("handling message %s failed", _ref(msg.dedupe_key))
                    break
            else:
                log.error("handling message %s conflicted twice", _ref(msg.dedupe_key))
            # Nothing was stored, so the resident can send it again; tell them so — through the outbox when
            # WeChat has already been answered `success` and will not retry.
            if not job.deferred:
                return self.texts("common.error")
            await self._push_error(msg.openid)
            return None

    async def _push_error(self, openid: str) -> None:
        try:
            async with self.store.write() as tx:
                await enqueue_text(tx, self.clock, openid, self.texts("common.error"))
        except Exception:
            log.exception("could not queue the error notice either")

    async def _handle_once(self, job: _Job) -> str | None:
        msg = job.msg
        # The lock above orders one resident's messages within this process; `serial` orders them across
        # instances, so a retry another instance is still handling waits for it and then finds its answer.
        async with self.store.write(serial=msg.openid) as tx:
            existing = await tx.one(_STORED, key=msg.dedupe_key)
            if existing is not None:
                return _answer_of(existing)
            metrics.when_committed(metrics.INBOUND.labels(metrics.inbound_type(msg.kind, msg.event)).inc)
            ctx = Ctx(tx=tx, clock=self.clock, settings=self.settings, texts=self.texts, openid=msg.openid)
            reply = await self.handler(ctx, msg)
            chunks = split_text(reply, self.settings.webhook.max_text_bytes) if reply else []
            # An earlier answer still waiting in the outbox must not be overtaken by this one.
            since = tx.ts(self.clock.now() - QUEUED_ANSWER_HORIZON)
            queued = bool(chunks) and await tx.val(_QUEUED, openid=msg.openid, since=since) is not None
            # From here the answer is fixed; a request that times out now waits for the commit instead.
            job.phase = "committing"
            deferred = job.deferred or queued
            # Continuations wait a moment so they cannot overtake the passive reply WeChat is about to show.
            not_before = None if deferred else self.clock.now() + CONTINUATION_DELAY
            for chunk in chunks if deferred else chunks[1:]:
                await enqueue_text(tx, self.clock, msg.openid, chunk, not_before=not_before)
            if ctx.forgotten:
                # The handler detached the sender (bot/services/forget.py): no dedupe row may name them, and a
                # retry of this message redoes nothing (there is nothing left to detach).
                return None if deferred or not chunks else chunks[0]
            await tx.run(
                _STORE,
                key=msg.dedupe_key,
                openid=msg.openid,
                msg_type=msg.event or msg.kind,
                at=tx.ts(self.clock.now()),
                status="deferred" if deferred else "replied",
                reply=None if deferred else js(chunks[:1]),
                # What staff read on the case page (bot/services/conversation.py).
                text=_said(msg),
                media_id=msg.media_id,
            )
        outcome = "deferred" if deferred else "answered"
        log.debug("message %s (%s) %s", _ref(msg.dedupe_key), msg.event or msg.kind, outcome)
        return None if deferred or not chunks else chunks[0]

    async def purge(self) -> int:
        """Forget what is kept only for a while: events past the dedupe retention (WeChat retries within
        seconds), messages past the conversation's retention, and drafts abandoned for weeks (they may hold a
        phone number). Rows removed."""
        now = self.clock.now()
        dedupe_cutoff = now - timedelta(hours=self.settings.webhook.dedupe_retention_hours)
        draft_cutoff = now - timedelta(days=self.settings.dialog.draft_retention_days)
        conversation_cutoff = now - timedelta(days=self.settings.webhook.conversation_retention_days)
        async with self.store.write() as tx:
            removed = await conversation.purge(
                tx, events_before=dedupe_cutoff, messages_before=min(conversation_cutoff, dedupe_cutoff)
            )
            expired = await drafts.purge(tx, draft_cutoff)
        for dialog in expired:
            metrics.DIALOGS_ABANDONED.labels(dialog, "expired").inc()
        removed += len(expired)
        await self.store.optimize()
        return removed

    async def drain(self) -> None:
        """Let running work finish (shutdown), so an accepted message is not dropped half-way."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


_STORED = "SELECT status, reply FROM inbound_messages WHERE dedupe_key = :key"
_QUEUED = "SELECT id FROM outbox WHERE openid = :openid AND status = 'pending' AND created_at >= :since LIMIT 1"
_STORE = """
INSERT INTO inbound_messages (dedupe_key, openid, msg_type, received_at, status, reply, text, media_id)
VALUES (:key, :openid, :msg_type, :at, :status, :reply, :text, :media_id)"""


def _said(msg: Inbound) -> str | None:
    """The words of a message, as staff should read them: its text, a voice's recognition, a link, a place."""
    if msg.kind == "location" and msg.location is not None:
        where = msg.location
        return f"{where.label} ({where.latitude:.5f}, {where.longitude:.5f})".strip()
    return msg.text


def _ref(dedupe_key: str) -> str:
    """A log reference for a message that does not reveal who sent it."""
    return hashlib.sha256(dedupe_key.encode()).hexdigest()[:12]


def _answer_of(row) -> str | None:
    reply = unjs(row["reply"]) if row["reply"] is not None else None
    if row["status"] != "replied" or not reply:
        return None
    return reply[0]
