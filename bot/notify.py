"""Outbox delivery: services write OutboxMessage rows in their own transaction; a scheduler tick sends them.

One tick: claim due rows with a lease in a short write transaction, send each outside any transaction (a slow
WeChat must not hold a database lock), then record the outcome in a write transaction that only succeeds
while our lease still stands. A crashed worker's rows are claimed again once its lease runs out; a worker
whose lease was taken over records nothing. Rows of one resident go out in id order: a row is not claimed
while an earlier row of the same resident is waiting for a retry or leased by another worker.

A text or menu row goes as a customer-service message while the resident's window and quota allow (tracked in
`residents` from their inbound traffic, counted here as messages go out), otherwise — or when WeChat answers
45015/45047 — as the template message settings [push] configure for its notice, with the case number and status
the row carries. Without a template (or a case number) a row outside the window fails with that reason.

A row fails for good only when WeChat refuses this message or this recipient (PERMANENT_ERRCODES) or its
payload is unusable. Everything else — busy, quotas, our own configuration — is retried later: a notice
(a deferred reply may carry a resident's case number) must not be lost to a quota or to a configuration
mistake an operator fixes an hour later. Logs name outbox rows by id, never by openid.

The database is spoken to in plain SQL through storage/fast.py (as the webhook does; the async ORM cost ~2.4 ms
a transaction, several times a notice's HTTP exchange): per tick one read, one claim transaction that also reads
the claimed residents' windows, and one transaction per FLUSH_SECONDS of sending recording the outcomes and
window counts so far (and once more at the end). Between flushes the windows are kept up to date in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bot import metrics
from bot.clock import Clock
from bot.config import OutboxSettings, PushSettings
from bot.services import residents, subscriptions
from bot.texts import Texts
from bot.wechat.api import HTTP_ERRCODE, TOKEN_ERRCODES, WeChatAPI, WeChatAPIError
from storage.fast import Store, Tx, in_list, unjs

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

MAX_BACKOFF_SECONDS = 3600
# Customer-service window closed (45015) or its quota spent (45047): the notice cannot go as a
# customer-service message and goes as the template message configured for it instead (see `_send`).
WINDOW_ERRCODES = frozenset({45015, 45047})
# 订阅通知 (message/subscribe/bizsend): the resident has not accepted the template (43101), or the data does not
# fit the template's field types (47003). Either way that channel cannot carry the notice; the next one may.
SUBSCRIPTION_REFUSED_ERRCODE = 43101
INVALID_DATA_ERRCODE = 47003
# Rows of these kinds are customer-service messages while the resident's window allows, else template messages.
CS_KINDS = frozenset({"text", "menu"})
NO_TEMPLATE = "window closed and no template configured"
# Refusals of this message or this recipient that no retry can fix: the row fails at once. Besides the
# window: 43004 unsubscribed, 40003 invalid openid, 45002 content too long, 40008 invalid message type,
# 44004 empty content, 40037 invalid template id, 47001 malformed request body.
PERMANENT_ERRCODES = WINDOW_ERRCODES | frozenset({43004, 40003, 45002, 40008, 44004, 40037, 47001})
# 45009: the account's daily quota is spent. Like a configuration error it says nothing about this message and
# lasts until the quota resets, so it is retried without spending attempts, never sooner than this.
DAILY_QUOTA_ERRCODE = 45009
DAILY_QUOTA_MIN_DELAY_SECONDS = 15 * 60
# The bot's configuration is wrong, not the message: 40164 caller IP not whitelisted, 40125 bad AppSecret,
# 40013 invalid AppID, -2 an HTTP 4xx without JSON (wrong api_base_url, a proxy's page) and a token rejected
# again after the client's one refresh (the client swallows the first rejection, so any TOKEN_ERRCODES that
# reach us are the second: another process rotating this account's token, or a changed AppSecret). Every
# row would fail alike until an operator fixes it, so these are logged once per tick and retried without
# spending attempts (see `_record`).
CONFIG_ERRCODES = frozenset({40164, 40125, 40013, HTTP_ERRCODE}) | TOKEN_ERRCODES
CONFIG_MIN_DELAY_SECONDS = 5 * 60
_CONFIG_HINTS = {
    40164: "add this server's outbound IP to the account's IP whitelist",
    40125: "check wechat.app_secret",
    40013: "check wechat.app_id",
    HTTP_ERRCODE: "check wechat.api_base_url and any proxy in between",
    **dict.fromkeys(TOKEN_ERRCODES, "another process may be refreshing this account's token, or the secret changed"),
}
# Serializes claims on PostgreSQL so two workers never split one resident's rows between them (which would
# let a later row overtake an earlier one). Claims are one short UPDATE, so taking turns costs nothing.
_CLAIM_LOCK_KEY = 0x6F7574626F78  # "outbox"
# Outcomes are written in one transaction per this many seconds of sending (and once more when the tick's
# sends are through), so a process that dies mid-tick leaves only that much sent-but-unrecorded behind.
FLUSH_SECONDS = 0.02
# A tick holds up to PREFETCH × batch_size claimed rows, of which at most batch_size are being sent at once;
# as sends complete it claims more, for REFILL_SECONDS (then it lets the sends under way finish and ends, so the
# scheduler's next tick comes): a refill whenever REFILL_FRACTION of what it holds has completed. Claiming
# ahead means few claims (each a write transaction) and sends that go on while a claim or a flush runs.
PREFETCH = 8
REFILL_SECONDS = 0.5
REFILL_FRACTION = 0.25

_ANYTHING_DUE = "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now LIMIT 1"
# What a claim leases, as one statement: the first :limit due, unleased rows by id that no earlier row of the
# same resident holds back (one waiting for a retry, or leased by another worker). Kept as the definition that
# `_claim`'s faster statements (_DUE_UNHELD, then _LEASE) must match.
_CLAIM = """
UPDATE outbox SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT c.id FROM outbox c
    WHERE c.status = 'pending' AND c.next_attempt_at <= :now
      AND (c.lease_until IS NULL OR c.lease_until <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM outbox e
          WHERE e.openid = c.openid AND e.id < c.id AND e.status = 'pending'
            AND (e.next_attempt_at > :now OR e.lease_until > :now))
    ORDER BY c.id LIMIT :limit{lock})
RETURNING id, openid, kind, payload, attempts, created_at"""
# SKIP LOCKED: rows another transaction is writing are left for a later tick instead of waited on.
_CLAIM_PG_LOCK = " FOR UPDATE OF c SKIP LOCKED"
# The same rows as _CLAIM, found faster. _CLAIM tests every due row for being held back before it sorts them
# (~8 ms with 10,000 due on SQLite, ~0.7 s on PostgreSQL); this takes the first :window due rows by id and tests
# only those. Exact whenever it finds :limit rows (no row below the window's last is missed) or the window held
# every due row; otherwise `_due_ids` widens the window. The rows come from ix_outbox_pending (pending rows in
# id order): with ix_outbox_due, which SQLite's planner prefers unless told ({hint}), every due row is read and
# sorted first — ~1 ms a claim with 10,000 due, against ~0.1 ms.
_DUE = """SELECT id FROM outbox{hint} WHERE status = 'pending' AND next_attempt_at <= :now
ORDER BY id LIMIT :window"""
_SQLITE_PENDING_HINT = " INDEXED BY ix_outbox_pending"
_DUE_UNHELD = f"""
SELECT c.id FROM outbox c
WHERE c.id IN ({_DUE}) AND (c.lease_until IS NULL OR c.lease_until <= :now)
  AND NOT EXISTS (
    SELECT 1 FROM outbox e
    WHERE e.openid = c.openid AND e.id < c.id AND e.status = 'pending'
      AND (e.next_attempt_at > :now OR e.lease_until > :now))
ORDER BY c.id LIMIT :limit{{lock}}"""
_DUE_COUNT = f"SELECT count(*) FROM ({_DUE}) d"
# By dialect (is_sqlite): the hint on SQLite, the row lock on PostgreSQL.
_DUE_UNHELD_SQL = {
    True: _DUE_UNHELD.format(hint=_SQLITE_PENDING_HINT, lock=""),
    False: _DUE_UNHELD.format(hint="", lock=_CLAIM_PG_LOCK),
}
_DUE_COUNT_SQL = {True: _DUE_COUNT.format(hint=_SQLITE_PENDING_HINT), False: _DUE_COUNT.format(hint="")}
# PostgreSQL: _DUE_UNHELD, _LEASE and _WINDOWS as one statement. Each statement is a round trip, and while a
# tick's sends keep the event loop busy every round trip waits its turn there: as three, a claim took 30-60 ms.
_PG_CLAIM = f"""
WITH due AS ({_DUE_UNHELD_SQL[False]}),
leased AS (
    UPDATE outbox o SET lease_owner = :owner, lease_until = :until FROM due WHERE o.id = due.id
    RETURNING o.id, o.openid, o.kind, o.payload, o.attempts, o.created_at)
SELECT l.id, l.openid, l.kind, l.payload, l.attempts, l.created_at,
       r.last_message_at, r.last_event_at, r.cs_sent_since_message, r.cs_sent_since_event
FROM leased l LEFT JOIN residents r ON r.openid = l.openid"""
_LEASE = """
UPDATE outbox SET lease_owner = :owner, lease_until = :until WHERE id IN ({ids})
RETURNING id, openid, kind, payload, attempts, created_at"""
# Residents are looked up through the outbox row, so no statement (nor a driver's debug log) carries an openid.
_WINDOWS = """
SELECT o.id, r.last_message_at, r.last_event_at, r.cs_sent_since_message, r.cs_sent_since_event
FROM outbox o JOIN residents r ON r.openid = o.openid WHERE o.id IN ({ids})"""
# One customer-service message spent per listed row (of distinct residents): from the long window first, as
# WeChat counts them; the short one for those the long one did not take.
_COUNT_MESSAGE = """
UPDATE residents SET cs_sent_since_message = cs_sent_since_message + 1
WHERE openid IN (SELECT openid FROM outbox WHERE id IN ({ids}))
  AND last_message_at > :since AND cs_sent_since_message < :quota
RETURNING id"""
_COUNT_EVENT = """
UPDATE residents SET cs_sent_since_event = cs_sent_since_event + 1
WHERE openid IN (SELECT openid FROM outbox WHERE id IN ({ids})){taken}
  AND last_event_at > :since AND cs_sent_since_event < :quota"""
_RECORD = "UPDATE outbox SET {values} WHERE id = :row_id AND lease_owner = :me AND status = 'pending'"
# Sent rows, all at once: `attempts + 1` is the claimed count plus one, as nobody else writes a row we lease.
# SQLite: `+status` keeps the planner on the ids, not on a scan of every pending row in ix_outbox_due.
_RECORD_SENT = """
UPDATE outbox SET status = 'sent', sent_at = :now, attempts = attempts + 1, last_error = NULL,
    lease_owner = NULL, lease_until = NULL
WHERE id IN ({ids}) AND lease_owner = :me AND {status} = 'pending'
RETURNING id"""
_RELEASE = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE id IN ({ids}) AND lease_owner = :me"


@dataclass(frozen=True)
class _Row:
    id: int
    openid: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass
class _Window:
    """A resident's customer-service window as the claim read it, kept up to date as this tick sends."""

    last_message_at: datetime | None
    last_event_at: datetime | None
    sent_since_message: int
    sent_since_event: int


@dataclass(frozen=True)
class _Outcome:
    # "sent" · "retry" (try again later) · "failed" (give up)
    status: str
    error: str | None = None
    # A retry waits at least this long, however few attempts were made.
    min_delay: float = 0.0
    # Retried without spending an attempt: the cause is the account, not this message (see `_record`).
    keeps_attempts: bool = False
    # The WeChat errcode of a configuration error (CONFIG_ERRCODES), logged once per tick.
    config_errcode: int | None = None


SENT = _Outcome("sent")


@dataclass
class _Tick:
    """One tick's state: residents' windows, and the writes waiting for the next flush, in order."""

    windows: dict[str, _Window | None]
    # ("count", row, now) · ("record", row, outcome, now) · ("release", rows) · ("spend", row, template_id)
    # · ("refused", row, template_id, now)
    writes: list[tuple] = field(default_factory=list)
    # 订阅通知 subscriptions looked up this tick, by (openid, template id), kept up to date as this tick sends.
    subscription_of: dict[tuple[str, str], subscriptions.Subscription | None] = field(default_factory=dict)
    # Set when a flush failed: chains stop sending, as nothing more would be recorded.
    broken: bool = False
    # Claimed rows not yet sent, released or given up on: a refill claims at most batch_size minus these.
    unfinished: int = 0
    # At most batch_size sends at once, across the chains.
    sending: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)
    # Chains still running; `tick` waits on `wake`, set once unfinished falls to wake_at or no chain is left.
    chains: int = 0
    wake_at: int = 0
    wake: asyncio.Future | None = None

    def wake_up(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def row_done(self, rows: int = 1) -> None:
        self.unfinished -= rows
        if self.unfinished <= self.wake_at:
            self.wake_up()

    def chain_done(self, _chain: asyncio.Future) -> None:
        self.chains -= 1
        if not self.chains:
            self.wake_up()


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        api: WeChatAPI,
        clock: Clock,
        settings: OutboxSettings,
        owner: str,
        *,
        push: PushSettings | None = None,
        texts: Texts | None = None,
        max_send_seconds: float = 30.0,
        tz: tzinfo = SHANGHAI,
    ):
        # The longest one send can take (timeouts × tries, a token refresh, a template fallback): a resident's
        # chain stops before its rows' lease could run out mid-send and let another worker send them too.
        self.max_send_seconds = max_send_seconds
        self.store = store
        self.api = api
        self.clock = clock
        self.settings = settings
        self.owner = owner
        self.push = push or PushSettings()
        self.texts = texts or Texts()
        # The office's time zone: the time a 订阅通知 shows.
        self.tz = tz

    async def tick(self) -> int:
        """Deliver what is due; the number of messages sent.

        Keeps batch_size sends in flight: as sends complete, more due rows are claimed (PREFETCH,
        REFILL_SECONDS, REFILL_FRACTION), until a claim comes back short (then again only after the next flush,
        which may free a resident's next row) or the tick's budget is spent; then the sends under way finish."""
        if not await self._anything_due():
            return 0  # a read: an idle tick must not take the write lock every second
        limit = self.settings.batch_size * PREFETCH
        claimed_at = self.clock.now()
        rows, windows = await self._claim(limit)
        if not rows:
            return 0
        state = _Tick(windows, sending=asyncio.Semaphore(self.settings.batch_size))
        config_failures: list[tuple[_Row, _Outcome]] = []
        chains: list[asyncio.Future[int]] = []

        def start(claimed: list[_Row], claimed_at: datetime) -> None:
            per_resident: dict[str, list[_Row]] = {}
            for row in claimed:
                per_resident.setdefault(row.openid, []).append(row)
            state.unfinished += len(claimed)
            for chain_rows in per_resident.values():
                chain = asyncio.ensure_future(self._deliver_in_order(chain_rows, claimed_at, state, config_failures))
                chain.add_done_callback(state.chain_done)
                chains.append(chain)
            state.chains += len(per_resident)

        start(rows, claimed_at)
        loop = asyncio.get_running_loop()
        last_flush = loop.time()
        refill_until = last_flush + REFILL_SECONDS
        # Chains wake the loop below once this many claimed rows are left (or when the last chain ends).
        state.wake_at = limit - max(1, int(limit * REFILL_FRACTION))
        # A claim came back short: nothing more is claimable until a flush records rows (or time passes).
        short = len(rows) < limit
        flush_error: BaseException | None = None
        claim_error: BaseException | None = None
        # The flush under way. It runs beside the sends and the claims (on PostgreSQL on its own connection), so
        # that neither waits for the other's round trips; flushes themselves run one at a time, in order.
        flushing: asyncio.Task | None = None

        def flushed(task: asyncio.Task) -> None:
            nonlocal flushing, flush_error, last_flush, short
            flushing, last_flush = None, loop.time()
            if not task.cancelled() and task.exception() is not None:
                flush_error, state.broken = task.exception(), True
            else:
                short = False  # rows recorded: later rows of their residents may be claimable now
            state.wake_up()

        try:
            while state.chains or flushing is not None or (state.writes and flush_error is None):
                flush_now = (
                    flushing is None
                    and flush_error is None
                    and bool(state.writes)
                    and (not state.chains or loop.time() - last_flush >= FLUSH_SECONDS)
                )
                claim_now = (
                    state.unfinished <= state.wake_at
                    and not short
                    and not state.broken
                    and claim_error is None
                    and loop.time() < refill_until
                )
                if flush_now:
                    flushing = asyncio.ensure_future(self._flush(state))
                    flushing.add_done_callback(flushed)
                if claim_now:
                    # Only rows whose earlier rows are recorded can be claimed (the claim's rule), so a refill
                    # never starts a resident's row while one of its earlier rows is still under way here.
                    free = limit - state.unfinished
                    try:
                        claimed_at = self.clock.now()
                        rows, windows = await self._claim(free)
                    except Exception as exc:
                        claim_error = exc  # let the sends under way finish and be recorded, then raise
                        continue
                    short = len(rows) < free
                    # Fresh from the database, which holds every count of these residents (a resident's
                    # counts are flushed with the record of its row, which its next row's claim waited for).
                    state.windows.update(windows)
                    start(rows, claimed_at)
                    continue
                if flush_now:
                    continue
                # Outcomes go to the database every FLUSH_SECONDS while sends are under way, then once at the end;
                # in between, the chains wake us when enough of them are through for a refill, a flush when done.
                state.wake = loop.create_future()
                timer = None
                if flushing is None:
                    timer = loop.call_later(max(0.0, last_flush + FLUSH_SECONDS - loop.time()), state.wake_up)
                try:
                    await state.wake
                finally:
                    if timer is not None:
                        timer.cancel()
        finally:
            for chain in chains:
                chain.cancel()  # only those still running: when tick itself is cancelled
            if flushing is not None:
                flushing.cancel()
        if config_failures:
            _log_config_failures(config_failures)
        if flush_error is not None:
            raise flush_error
        errors = [c.exception() for c in chains if c.exception() is not None]
        if errors:
            raise errors[0]
        if claim_error is not None:
            raise claim_error
        return sum(c.result() for c in chains)

    async def _anything_due(self) -> bool:
        async with self.store.read() as tx:
            return await tx.val(_ANYTHING_DUE, now=tx.ts(self.clock.now())) is not None

    async def _claim(self, limit: int) -> tuple[list[_Row], dict[str, _Window | None]]:
        """Lease up to `limit` due rows, and read the windows of their residents, in one short write transaction."""
        now = self.clock.now()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.store.write() as tx:
            if tx.is_sqlite:
                # No lock of ours: BEGIN IMMEDIATE already lets one writer in at a time.
                due = await self._due_ids(tx, now, limit)
                if not due:
                    return [], {}
                ids, params = in_list(tx, due)
                claimed = await tx.all(_LEASE.format(ids=ids), owner=self.owner, until=tx.ts(until), **params)
                rows = _rows(tx, claimed)
                windows = await self._windows(tx, rows)
            else:
                await tx.val("SELECT pg_advisory_xact_lock(:key)", key=_CLAIM_LOCK_KEY)
                claimed = []
                window = self._first_window()
                while True:
                    claimed += await tx.all(
                        _PG_CLAIM, now=now, window=window, limit=limit - len(claimed), owner=self.owner, until=until
                    )
                    if len(claimed) >= limit or await tx.val(_DUE_COUNT_SQL[False], now=now, window=window) < window:
                        break
                    window *= 8  # leased rows are not due again, so the wider window claims only rows it adds
                rows = _rows(tx, claimed)
                windows = {}
                for r in sorted(claimed, key=lambda r: r["id"]):
                    if r["kind"] in CS_KINDS and r["openid"] not in windows:
                        windows[r["openid"]] = _window_of(tx, r)
        return rows, windows

    async def _windows(self, tx: Tx, rows: list[_Row]) -> dict[str, _Window | None]:
        """The customer-service windows of the residents of these rows' notices (None: no record of them)."""
        first_notice: dict[str, int] = {}
        for row in rows:
            if row.kind in CS_KINDS:
                first_notice.setdefault(row.openid, row.id)
        windows: dict[str, _Window | None] = dict.fromkeys(first_notice)
        if first_notice:
            openid_of = {row_id: openid for openid, row_id in first_notice.items()}
            ids, params = in_list(tx, list(openid_of))
            for r in await tx.all(_WINDOWS.format(ids=ids), **params):
                windows[openid_of[r["id"]]] = _window_of(tx, r)
        return windows

    def _first_window(self) -> int:
        # The window also covers the rows this tick holds leased (up to PREFETCH × batch_size of them).
        return max(2 * PREFETCH * self.settings.batch_size, 200)

    async def _due_ids(self, tx: Tx, now: datetime, limit: int) -> list[int]:
        """The ids _CLAIM would lease, through _DUE_UNHELD, widening its window until the answer is exact."""
        window = self._first_window()
        while True:
            ids = [
                r[0] for r in await tx.all(_DUE_UNHELD_SQL[tx.is_sqlite], now=tx.ts(now), window=window, limit=limit)
            ]
            if len(ids) >= limit or await tx.val(_DUE_COUNT_SQL[tx.is_sqlite], now=tx.ts(now), window=window) < window:
                return ids
            window *= 8

    async def _deliver_in_order(
        self, rows: list[_Row], claimed_at: datetime, state: _Tick, config_failures: list[tuple[_Row, _Outcome]]
    ) -> int:
        """Send one resident's claimed rows one after another, each when one of batch_size places is free."""
        delivered = done = 0
        try:
            for i, row in enumerate(rows):
                async with state.sending:
                    if state.broken:
                        break  # outcomes can no longer be recorded: the rest waits for its lease to run out
                    # The leases began no later than claimed_at; a send must end before they can run out.
                    elapsed = (self.clock.now() - claimed_at).total_seconds()
                    if elapsed + self.max_send_seconds > self.settings.lease_seconds:
                        state.writes.append(("release", rows[i:]))  # claimed again, under a new lease
                        break
                    outcome = await self._send(row, state)
                done += 1
                state.row_done()
                state.writes.append(("record", row, outcome, self.clock.now()))
                if outcome.config_errcode is not None:
                    config_failures.append((row, outcome))
                if outcome is SENT:
                    delivered += 1
                elif outcome.status == "retry":
                    # Later rows of this resident wait until this one is through; they are not attempted now.
                    if rows[i + 1 :]:
                        state.writes.append(("release", rows[i + 1 :]))
                    break
        finally:
            if len(rows) > done:
                state.row_done(len(rows) - done)
        return delivered

    async def _send(self, row: _Row, state: _Tick) -> _Outcome:
        try:
            if row.kind in CS_KINDS:
                return await self._send_notice(row, state)
            await self._call_api(row.kind, row.openid, row.payload)
        except WeChatAPIError as exc:
            if exc.errcode in PERMANENT_ERRCODES:
                log.warning("outbox %s (%s) failed: %s", row.id, row.kind, exc)
                return _Outcome("failed", str(exc))
            if exc.errcode in CONFIG_ERRCODES:
                # Logged once per tick for all rows (see `tick`), not once per row.
                return _Outcome("retry", str(exc), CONFIG_MIN_DELAY_SECONDS, True, config_errcode=exc.errcode)
            if exc.errcode == DAILY_QUOTA_ERRCODE:
                return _Outcome("retry", str(exc), DAILY_QUOTA_MIN_DELAY_SECONDS, keeps_attempts=True)
            # -1 busy, 45011 per-minute quota and anything we do not know: bounded by max_attempts.
            return _Outcome("retry", str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed row will not get better by waiting.
            log.error("outbox %s: unusable %s payload: %r", row.id, row.kind, exc)
            return _Outcome("failed", f"bad payload: {exc!r}")
        except Exception as exc:
            # Not WeChat's answer (a bug, a closed session): retrying is bounded by max_attempts.
            log.exception("outbox %s: unexpected error", row.id)
            return _Outcome("retry", f"{type(exc).__name__}: {exc}")
        return SENT

    # --- the channel: customer-service message while the window allows, else the template message ------------

    async def _send_notice(self, row: _Row, state: _Tick) -> _Outcome:
        """A text or menu row. Raises WeChatAPIError of the channel finally used, for `_send` to judge."""
        window = state.windows.get(row.openid)
        if self._window(window) == "closed":
            return await self._outside_window(row, state, "window closed (tracked)")
        try:
            await self._call_api(row.kind, row.openid, row.payload)
        except WeChatAPIError as exc:
            if exc.errcode not in WINDOW_ERRCODES:
                raise
            # Our count said open (or we had none); WeChat knows better.
            log.info("outbox %s: customer-service refused (%s); trying the fallback channels", row.id, exc.errcode)
            return await self._outside_window(row, state, str(exc))
        now = self.clock.now()
        if window is not None:
            self._spend(window, now)  # what `_count` does to the resident's row, for this tick's later rows
        state.writes.append(("count", row, now))
        return SENT

    def _window(self, found: _Window | None) -> str:
        """ "open", "closed", or "unknown" (no record of this resident: WeChat decides when we try)."""
        if found is None:
            return "unknown"
        return residents.window_state(
            found.last_message_at,
            found.last_event_at,
            found.sent_since_message,
            found.sent_since_event,
            now=self.clock.now(),
            push=self.push,
        )

    def _spend(self, window: _Window, now: datetime) -> None:
        p = self.push
        if (
            window.last_message_at is not None
            and window.last_message_at > now - timedelta(hours=p.window_hours)
            and window.sent_since_message < p.window_quota
        ):
            window.sent_since_message += 1
        elif (
            window.last_event_at is not None
            and window.last_event_at > now - timedelta(seconds=p.event_window_seconds)
            and window.sent_since_event < p.event_window_quota
        ):
            window.sent_since_event += 1

    async def _count(self, tx: Tx, counts: list[tuple[_Row, datetime]]) -> None:
        """The customer-service messages sent, counted against their residents' windows: a resident's n-th
        message in round n, so each round's statements see every resident at most once."""
        rounds: list[list[tuple[_Row, datetime]]] = []
        seen: dict[str, int] = {}
        for row, at in counts:
            n = seen[row.openid] = seen.get(row.openid, -1) + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append((row, at))
        p = self.push
        for spent in rounds:
            now = min(at for _, at in spent)
            ids, params = in_list(tx, [row.id for row, _ in spent])
            taken = [
                r[0]
                for r in await tx.all(
                    _COUNT_MESSAGE.format(ids=ids),
                    since=tx.ts(now - timedelta(hours=p.window_hours)),
                    quota=p.window_quota,
                    **params,
                )
            ]
            if len(taken) == len(spent):
                continue
            not_taken, taken_params = in_list(tx, taken, "r")
            await tx.run(
                _COUNT_EVENT.format(ids=ids, taken=f" AND id NOT IN ({not_taken})" if taken else ""),
                since=tx.ts(now - timedelta(seconds=p.event_window_seconds)),
                quota=p.event_window_quota,
                **params,
                **taken_params,
            )

    async def _outside_window(self, row: _Row, state: _Tick, why: str) -> _Outcome:
        """The notice cannot go as a customer-service message (`why`): the [push] fallback channels in order, the
        first that can carry it does. A channel that cannot says why, and the next is tried; a failure of the
        channel itself (busy, quota, configuration) is raised as WeChatAPIError for `_send` to judge."""
        reasons: list[str] = []
        for channel in self.push.fallback:
            send = self._send_subscription if channel == "subscribe" else self._send_template
            outcome = await send(row, state)
            if outcome is SENT:
                return SENT
            reasons.append(outcome)
        reason = "; ".join(reasons) or "window closed and no fallback channel configured"
        log.warning("outbox %s (%s): %s (%s)", row.id, row.kind, reason, why)
        return _Outcome("failed", f"{reason} ({why})")

    async def _send_template(self, row: _Row, _state: _Tick) -> _Outcome | str:
        """模板消息: SENT, or why this channel cannot carry the notice."""
        payload = row.payload
        template_id = self.push.template_for(payload.get("notice"))
        if not template_id:
            return NO_TEMPLATE
        number = payload.get("case_number")
        if not number:
            return "window closed and the notice carries no case number for a template"
        p = self.push
        data: dict[str, dict[str, str]] = {}
        if p.template_title_field:
            data[p.template_title_field] = {"value": self.texts("push.template_title")}
        data[p.template_number_field] = {"value": str(number)}
        data[p.template_status_field] = {"value": payload.get("status_text") or self.texts("push.status_unknown")}
        data[p.template_text_field] = {"value": _notice_text(row.kind, payload)}
        url = payload.get("url") or (p.template_url.format(number=number) if p.template_url else None)
        await _counted("template", self.api.send_template(row.openid, template_id, data, url))
        return SENT

    async def _send_subscription(self, row: _Row, state: _Tick) -> _Outcome | str:
        """订阅通知: SENT, or why this channel cannot carry the notice — no template for it, or the resident has not
        accepted it (by our record, or by WeChat's 43101, which corrects the record)."""
        payload = row.payload
        template_id = self.push.subscribe_template_for(payload.get("notice"))
        if not template_id:
            return "no 订阅通知 template configured"
        number = payload.get("case_number")
        if not number:
            return "the notice carries no case number for a 订阅通知"
        one_off = template_id in self.push.subscribe_one_off
        key = (row.openid, template_id)
        if key not in state.subscription_of:
            async with self.store.read() as tx:
                state.subscription_of[key] = await subscriptions.for_row(tx, row.id, template_id)
        found = state.subscription_of[key]
        if found is None or not found.allows(one_off):
            used = " (its one-off acceptances are used up)" if found is not None and found.status == "accept" else ""
            return f"the resident has not accepted 订阅通知 {template_id}{used}"
        p = self.push
        page = payload.get("url") or (p.subscribe_page.format(number=number) if p.subscribe_page else None)
        try:
            data = self._subscription_data(row, str(number))
            await _counted("subscribe", self.api.send_subscribe(row.openid, template_id, data, page))
        except WeChatAPIError as exc:
            if exc.errcode == SUBSCRIPTION_REFUSED_ERRCODE:
                state.subscription_of[key] = subscriptions.Subscription("reject", 0)
                state.writes.append(("refused", row, template_id, self.clock.now()))
                return f"WeChat refused 订阅通知 {template_id} ({exc})"
            if exc.errcode == INVALID_DATA_ERRCODE:
                log.error(
                    "outbox %s: 订阅通知 %s refused the data (%s): check push.subscribe_*_field",
                    row.id,
                    template_id,
                    exc,
                )
                return f"订阅通知 {template_id} refused the data ({exc}); check push.subscribe_*_field"
            raise
        if one_off:
            state.subscription_of[key] = subscriptions.Subscription(found.status, found.grants - 1)
            state.writes.append(("spend", row, template_id))
        return SENT

    def _subscription_data(self, row: _Row, number: str) -> dict[str, dict[str, str]]:
        """The template's fields, each value made to fit its field's type (WeChat refuses what does not: 47003)."""
        p, payload = self.push, row.payload
        text = _notice_text(row.kind, payload)
        if p.subscribe_text_field and len(text) > _field_limit(p.subscribe_text_field, len(text)):
            text = self.texts("push.subscribe_more")  # a notice is rarely this short: the page has it whole
        status = payload.get("status_text") or ""
        if not status or (p.subscribe_status_field and len(status) > _field_limit(p.subscribe_status_field, 99)):
            status = self.texts("push.status_unknown")  # a cut status would say something else
        values = {
            p.subscribe_number_field: number,
            p.subscribe_status_field: status,
            p.subscribe_text_field: text,
            p.subscribe_time_field: row.created_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M"),
        }
        return {name: {"value": _fit(name, value)} for name, value in values.items() if name}

    async def _call_api(self, kind: str, openid: str, payload: dict[str, Any]) -> None:
        if kind == "text":
            await _counted("customer-service", self.api.send_text(openid, payload["content"]))
        elif kind == "menu":
            options = [(str(option_id), str(label)) for option_id, label in payload["options"]]
            call = self.api.send_menu(openid, payload["head"], options, payload.get("tail", ""))
            await _counted("customer-service", call)
        elif kind == "template":
            call = self.api.send_template(openid, payload["template_id"], payload["data"], payload.get("url"))
            await _counted("template", call)
        else:
            raise ValueError(f"unknown outbox kind {kind!r}")

    # --- writing outcomes: in batches, in the order they happened --------------------------------------------

    async def _flush(self, state: _Tick) -> None:
        """Everything the tick's chains have done since the last flush, in one transaction.

        Sent rows are recorded by one statement, stamped with the flush's time (at most FLUSH_SECONDS after
        the send); other outcomes one by one. Nothing here depends on the order between rows of different
        residents, and a resident's rows keep theirs (counts in rounds, a release after its row's record)."""
        if not state.writes:
            return
        writes, state.writes = state.writes, []
        now = self.clock.now()
        sent: list[_Row] = []
        counts: list[tuple[_Row, datetime]] = []
        lost: list[tuple[_Row, _Outcome]] = []
        async with self.store.write() as tx:
            for write in writes:
                if write[0] == "record":
                    _, row, outcome, at = write
                    if outcome is SENT:
                        sent.append(row)
                    elif not await self._record(tx, row, outcome, at):
                        lost.append((row, outcome))
                elif write[0] == "count":
                    counts.append((write[1], write[2]))
                elif write[0] == "spend":
                    await subscriptions.spend(tx, write[1].id, write[2])
                elif write[0] == "refused":
                    await subscriptions.refused(tx, write[1].id, write[2], write[3])
                else:
                    await self._release(tx, write[1])
            if sent:
                ids, params = in_list(tx, [row.id for row in sent])
                recorded = {
                    r[0]
                    for r in await tx.all(
                        _RECORD_SENT.format(ids=ids, status="+status" if tx.is_sqlite else "status"),
                        now=tx.ts(now),
                        me=self.owner,
                        **params,
                    )
                }
                lost += [(row, SENT) for row in sent if row.id not in recorded]
            await self._count(tx, counts)
        for row, outcome in sorted(lost, key=lambda lost_row: lost_row[0].id):
            log.warning("outbox %s: lease lost to another worker; %s not recorded", row.id, outcome.status)

    async def _record(self, tx: Tx, row: _Row, outcome: _Outcome, now: datetime) -> bool:
        """Write the outcome while our lease stands; False if another worker took the row over."""
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "lease_owner": None, "lease_until": None}
        if outcome is SENT:
            values.update(status="sent", sent_at=tx.ts(now), last_error=None)
        elif outcome.keeps_attempts:
            # A configuration error (or a spent daily quota) says nothing about this message: every row fails
            # alike until an operator fixes the setting (or the day rolls over), which may take hours. Counting
            # these tries against max_attempts would give up notices for good over something fixed later, so
            # `attempts` stays as it was and only next_attempt_at moves on. With the count frozen, the backoff
            # grows with the row's age instead: waiting as long again as the row has existed doubles the wait
            # each time, from the minimum up to the hour's cap — a fix is picked up within the hour, and a long
            # outage costs few calls.
            age = (now - row.created_at).total_seconds()
            delay = min(max(outcome.min_delay, age), MAX_BACKOFF_SECONDS)
            values.update(attempts=row.attempts, next_attempt_at=tx.ts(now + timedelta(seconds=delay)))
            values.update(last_error=outcome.error)
        elif outcome.status == "retry" and attempts < self.settings.max_attempts:
            backoff = min(self.settings.backoff_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            delay = max(backoff, outcome.min_delay)
            values.update(next_attempt_at=tx.ts(now + timedelta(seconds=delay)), last_error=outcome.error)
        else:
            error = outcome.error if outcome.status == "failed" else f"{outcome.error} (gave up after {attempts} tries)"
            values.update(status="failed", last_error=error)
        sql = _RECORD.format(values=", ".join(f"{column} = :{column}" for column in values))
        return await tx.run(sql, row_id=row.id, me=self.owner, **values) > 0

    async def _release(self, tx: Tx, rows: list[_Row]) -> None:
        ids, params = in_list(tx, [r.id for r in rows])
        await tx.run(_RELEASE.format(ids=ids), me=self.owner, **params)


async def _counted(channel: str, call: Awaitable[Any]) -> None:
    """One send through `channel`, counted by WeChat's answer (0: accepted)."""
    try:
        await call
    except WeChatAPIError as exc:
        metrics.DELIVERIES.labels(channel, str(exc.errcode)).inc()
        raise
    metrics.DELIVERIES.labels(channel, "0").inc()


def _rows(tx: Tx, claimed: list) -> list[_Row]:
    rows = (
        _Row(r["id"], r["openid"], r["kind"], unjs(r["payload"]), r["attempts"], tx.dt(r["created_at"]))
        for r in claimed
    )
    return sorted(rows, key=lambda r: r.id)


def _window_of(tx: Tx, r: Any) -> _Window | None:
    if r["cs_sent_since_message"] is None:  # never NULL in a resident's row: the LEFT JOIN found none
        return None
    return _Window(
        tx.dt(r["last_message_at"]), tx.dt(r["last_event_at"]), r["cs_sent_since_message"], r["cs_sent_since_event"]
    )


# The longest value each 订阅通知 field type takes, in characters (WeChat's limits for official accounts).
_FIELD_LIMITS = {
    "thing": 20,
    "character_string": 32,
    "phrase": 5,
    "name": 10,
    "letter": 32,
    "symbol": 5,
    "number": 32,
    "phone_number": 17,
    "car_number": 8,
}


def _field_limit(field: str, default: int) -> int:
    return _FIELD_LIMITS.get(field.rstrip("0123456789"), default)


def _fit(field: str, value: str) -> str:
    limit = _field_limit(field, len(value))
    if len(value) <= limit:
        return value
    return value[: limit - 1] + "…" if field.startswith("thing") else value[:limit]


def _notice_text(kind: str, payload: dict[str, Any]) -> str:
    if kind == "menu":
        labels = "、".join(str(label) for _id, label in payload.get("options", []))
        return "\n".join(part for part in (payload["head"], labels, payload.get("tail", "")) if part)
    return payload["content"]


def _log_config_failures(failures: list[tuple[_Row, _Outcome]]) -> None:
    """One ERROR line per tick for every row a configuration error held back: by row id, never by openid."""
    errors = sorted({outcome.error or "" for _, outcome in failures})
    hints = sorted({_CONFIG_HINTS[o.config_errcode] for _, o in failures if o.config_errcode in _CONFIG_HINTS})
    ids = sorted(row.id for row, _ in failures)
    shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    log.error(
        "outbox: WeChat rejected the bot's configuration (%s); an operator must fix the configuration (%s). "
        "%d row(s) stay pending without spending attempts and are retried in %d minutes or more: %s",
        "; ".join(errors),
        "; ".join(hints),
        len(ids),
        CONFIG_MIN_DELAY_SECONDS // 60,
        shown,
    )
