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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, or_, select, text, update
from sqlalchemy.orm import aliased

from bot.clock import Clock
from bot.config import OutboxSettings, PushSettings
from bot.texts import Texts
from bot.wechat.api import HTTP_ERRCODE, TOKEN_ERRCODES, WeChatAPI, WeChatAPIError
from storage.db import Database
from storage.models import OutboxMessage, Resident

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
# Customer-service window closed (45015) or its quota spent (45047): the notice cannot go as a
# customer-service message and goes as the template message configured for it instead (see `_send`).
WINDOW_ERRCODES = frozenset({45015, 45047})
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


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        api: WeChatAPI,
        clock: Clock,
        settings: OutboxSettings,
        owner: str,
        *,
        push: PushSettings | None = None,
        texts: Texts | None = None,
    ):
        self.db = db
        self.api = api
        self.clock = clock
        self.settings = settings
        self.owner = owner
        self.push = push or PushSettings()
        self.texts = texts or Texts()

    async def tick(self) -> int:
        """Deliver what is due; the number of messages sent."""
        if not await self._anything_due():
            return 0  # a read: an idle tick must not take the write lock every second
        rows = await self._claim()
        per_resident: dict[str, list[Row]] = {}
        for row in rows:
            per_resident.setdefault(row.openid, []).append(row)
        config_failures: list[tuple[Row, _Outcome]] = []
        results = await asyncio.gather(
            *(self._deliver_in_order(rows, config_failures) for rows in per_resident.values()),
            return_exceptions=True,
        )
        if config_failures:
            _log_config_failures(config_failures)
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
            .returning(o.id, o.openid, o.kind, o.payload, o.attempts, o.created_at)
        )
        async with self.db.write() as session:
            # SQLite needs no lock of ours: BEGIN IMMEDIATE already lets one writer in at a time.
            if not self.db.is_sqlite:
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY})
            rows = (await session.execute(claim)).all()
        return sorted(rows, key=lambda r: r.id)

    async def _deliver_in_order(self, rows: list[Row], config_failures: list[tuple[Row, _Outcome]]) -> int:
        delivered = 0
        for i, row in enumerate(rows):
            outcome = await self._send(row)
            await self._record(row, outcome)
            if outcome.config_errcode is not None:
                config_failures.append((row, outcome))
            if outcome is SENT:
                delivered += 1
            elif outcome.status == "retry":
                # Later rows of this resident wait until this one is through; they are not attempted now.
                await self._release(rows[i + 1 :])
                break
        return delivered

    async def _send(self, row: Row) -> _Outcome:
        try:
            if row.kind in CS_KINDS:
                return await self._send_notice(row)
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

    async def _send_notice(self, row: Row) -> _Outcome:
        """A text or menu row. Raises WeChatAPIError of the channel finally used, for `_send` to judge."""
        window = await self._window(row.id)
        if window == "closed":
            return await self._send_template(row, "window closed (tracked)")
        try:
            await self._call_api(row.kind, row.openid, row.payload)
        except WeChatAPIError as exc:
            if exc.errcode not in WINDOW_ERRCODES:
                raise
            # Our count said open (or we had none); WeChat knows better.
            log.info("outbox %s: customer-service refused (%s); trying the template channel", row.id, exc.errcode)
            return await self._send_template(row, str(exc))
        await self._count_sent(row)
        return SENT

    async def _window(self, row_id: int) -> str:
        """ "open", "closed", or "unknown" (no record of this resident: WeChat decides when we try)."""
        r = Resident
        query = select(r.last_message_at, r.last_event_at, r.cs_sent_since_message, r.cs_sent_since_event)
        async with self.db.read() as session:
            found = (await session.execute(query.where(r.openid == _openid_of(row_id)))).first()
        if found is None:
            return "unknown"
        now, p = self.clock.now(), self.push
        by_message = found.last_message_at is not None and now < found.last_message_at + timedelta(hours=p.window_hours)
        by_event = found.last_event_at is not None and now < found.last_event_at + timedelta(
            seconds=p.event_window_seconds
        )
        if (by_message and found.cs_sent_since_message < p.window_quota) or (
            by_event and found.cs_sent_since_event < p.event_window_quota
        ):
            return "open"
        return "closed"

    async def _count_sent(self, row: Row) -> None:
        """One customer-service message spent: from the long window first, as WeChat counts them."""
        now, p, r = self.clock.now(), self.push, Resident
        message_open = and_(
            r.last_message_at > now - timedelta(hours=p.window_hours), r.cs_sent_since_message < p.window_quota
        )
        event_open = and_(
            r.last_event_at > now - timedelta(seconds=p.event_window_seconds),
            r.cs_sent_since_event < p.event_window_quota,
        )
        try:
            async with self.db.write() as session:
                spent = await session.execute(
                    update(r)
                    .where(r.openid == _openid_of(row.id), message_open)
                    .values(cs_sent_since_message=r.cs_sent_since_message + 1)
                )
                if spent.rowcount == 0:
                    await session.execute(
                        update(r)
                        .where(r.openid == _openid_of(row.id), event_open)
                        .values(cs_sent_since_event=r.cs_sent_since_event + 1)
                    )
        except Exception:
            # The message is out; a missed count only costs a 45047 and a template fallback later.
            log.exception("outbox %s: sent, but the window count was not updated", row.id)

    async def _send_template(self, row: Row, why: str) -> _Outcome:
        payload = row.payload
        template_id = self.push.template_for(payload.get("notice"))
        if not template_id:
            log.warning("outbox %s (%s): %s (%s)", row.id, row.kind, NO_TEMPLATE, why)
            return _Outcome("failed", f"{NO_TEMPLATE} ({why})")
        number = payload.get("case_number")
        if not number:
            log.warning("outbox %s (%s): window closed and no case number for the template (%s)", row.id, row.kind, why)
            return _Outcome("failed", f"window closed and the notice carries no case number for a template ({why})")
        p = self.push
        data: dict[str, dict[str, str]] = {}
        if p.template_title_field:
            data[p.template_title_field] = {"value": self.texts("push.template_title")}
        data[p.template_number_field] = {"value": str(number)}
        data[p.template_status_field] = {"value": payload.get("status_text") or self.texts("push.status_unknown")}
        data[p.template_text_field] = {"value": _notice_text(row.kind, payload)}
        url = payload.get("url") or (p.template_url.format(number=number) if p.template_url else None)
        await self.api.send_template(row.openid, template_id, data, url)
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
            values.update(attempts=row.attempts, next_attempt_at=now + timedelta(seconds=delay))
            values.update(last_error=outcome.error)
        elif outcome.status == "retry" and attempts < self.settings.max_attempts:
            backoff = min(self.settings.backoff_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            delay = max(backoff, outcome.min_delay)
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


def _openid_of(row_id: int):
    # Residents are looked up through the outbox row, so no statement (nor a driver's debug log) carries an openid.
    return select(OutboxMessage.openid).where(OutboxMessage.id == row_id).scalar_subquery()


def _notice_text(kind: str, payload: dict[str, Any]) -> str:
    if kind == "menu":
        labels = "、".join(str(label) for _id, label in payload.get("options", []))
        return "\n".join(part for part in (payload["head"], labels, payload.get("tail", "")) if part)
    return payload["content"]


def _log_config_failures(failures: list[tuple[Row, _Outcome]]) -> None:
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
