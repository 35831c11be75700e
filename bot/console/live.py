"""Live updates for the console (server-sent events at /console/live): new cases, new messages from residents
and notices WeChat would not take appear without reloading.

One poller per process reads the database once a second while anyone is connected — new cases and inbound
messages by id, failed outbox rows by the set of those seen — and hands each event to every connected operator
allowed to see its case. Reading the database, rather than hooking the webhook, keeps the hot path as it is and
shows events that arrived through any instance of frontdoor.

Ids are handed out when a row is inserted, not when it is committed: on PostgreSQL, with several connections
(or instances) writing, id 11 can be visible while id 10's transaction has yet to commit. So the cursor keeps
the ids it skipped and looks for them again for a while (IdCursor) instead of passing them for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import web

from bot.console import auth, keys, roles
from bot.console.auth import session_of
from bot.services import conversation, inbox, operators, privacy
from bot.services.operators import Operator
from storage.fast import in_list, unjs

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BATCH = 200
# A skipped id is looked for this long: longer than any transaction that inserts a case or a message (the
# webhook's budget is 5 s); after that its transaction rolled back and the id will never appear.
GAP_SECONDS = 60.0
# A jump of more ids than this (a sequence moving on after a crash) is not a set of transactions in flight.
GAP_MAX = 1000
KEEPALIVE_SECONDS = 15.0
FAILED_SEEN_LIMIT = 500
# Event fields that hold what a resident typed (phone numbers in them are hidden from some roles).
_FREE_TEXT = frozenset({"place", "summary"})


@dataclass(frozen=True)
class Event:
    kind: str  # case · message · failure
    number: str | None
    lead_unit: str | None
    co_units: tuple[str, ...]
    data: dict

    def visible_to(self, operator: Operator) -> bool:
        return self.number is not None and roles.sees_case(operator, self.lead_unit, self.co_units)


class IdCursor:
    """Where a reader of an append-only table has got to: the highest id seen, and the lower ids not yet seen
    that may still be committed."""

    def __init__(self, last: int):
        self.last = last
        self.gaps: dict[int, float] = {}  # id → when first missed (monotonic)

    def where(self, tx) -> tuple[str, dict]:
        if not self.gaps:
            return "id > :last", {"last": self.last}
        listed, params = in_list(tx, sorted(self.gaps), "gap")
        # The lower bound lets PostgreSQL read a range of the primary key instead of filtering the whole table.
        where = f"id >= :floor AND (id > :last OR id IN ({listed}))"
        return where, {"floor": min(self.gaps), "last": self.last, **params}

    def saw(self, ids: list[int], now: float) -> None:
        """`ids`: what one look returned, in id order."""
        for row_id in ids:
            if row_id in self.gaps or row_id <= self.last:
                self.gaps.pop(row_id, None)
                continue
            if row_id - self.last - 1 <= GAP_MAX:
                self.gaps.update(dict.fromkeys(range(self.last + 1, row_id), now))
            self.last = row_id
        for row_id, since in list(self.gaps.items()):
            if now - since > GAP_SECONDS:
                del self.gaps[row_id]


@dataclass(eq=False)  # each listener is its own: kept in a set by identity
class _Listener:
    operator: Operator
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=200))


class LiveFeed:
    def __init__(self, app: web.Application):
        self.app = app
        self.listeners: set[_Listener] = set()
        self._task: asyncio.Task | None = None
        self._cursor: dict[str, IdCursor] | None = None
        self._failed: set[int] = set()

    # --- listeners ------------------------------------------------------------------------------------------

    def subscribe(self, operator: Operator) -> _Listener:
        listener = _Listener(operator)
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return listener

    def unsubscribe(self, listener: _Listener) -> None:
        self.listeners.discard(listener)

    def stop_streams(self) -> None:
        """Ends every open stream (a server shutting down must not wait for browsers to hang up)."""
        for listener in list(self.listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the poller ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Polls while anyone listens; the cursors start at what exists when the first one connects."""
        self._cursor = None
        while self.listeners:
            try:
                for event in await self.poll():
                    self._publish(event)
            except Exception:
                log.exception("console live feed: poll failed; trying again")
            await asyncio.sleep(POLL_SECONDS)

    def _publish(self, event: Event) -> None:
        for listener in list(self.listeners):
            if event.visible_to(listener.operator):
                try:
                    listener.queue.put_nowait(event)
                except asyncio.QueueFull:
                    pass  # a browser that stopped reading loses updates, not the server its memory

    async def poll(self) -> list[Event]:
        texts, settings = self.app[keys.TEXTS], self.app[keys.SETTINGS]
        tz = settings.tz
        async with self.app[keys.STORE].read() as tx:
            if self._cursor is None:
                self._cursor = {
                    "case": IdCursor(await tx.val("SELECT COALESCE(MAX(id), 0) FROM cases")),
                    "inbound": IdCursor(await tx.val("SELECT COALESCE(MAX(id), 0) FROM inbound_messages")),
                }
                self._failed = set(await self._failed_ids(tx))
                return []
            events: list[Event] = []
            cases, now = self._cursor["case"], time.monotonic()
            where, params = cases.where(tx)
            rows = await tx.all(
                "SELECT id, number, category, place_label, description, status, lead_unit, co_units, created_at "
                f"FROM cases WHERE {where} ORDER BY id LIMIT {BATCH}",
                **params,
            )
            cases.saw([r["id"] for r in rows], now)
            for r in rows:
                data = {
                    "number": r["number"],
                    "category": r["category"],
                    "place": r["place_label"],
                    "summary": inbox.summary(r["description"]),
                    "status": texts(f"status.{r['status']}"),
                    "received": tx.dt(r["created_at"]).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    "text": texts("console.live.new_case", number=r["number"], category=r["category"]),
                }
                events.append(Event("case", r["number"], r["lead_unit"], tuple(unjs(r["co_units"]) or ()), data))
            # A case new in this look is news already: the messages that filed it are not news about it.
            told = {event.number for event in events}
            inbound = self._cursor["inbound"]
            where, params = inbound.where(tx)
            rows = await tx.all(
                f"SELECT id, openid, msg_type FROM inbound_messages WHERE {where} ORDER BY id LIMIT {BATCH}", **params
            )
            inbound.saw([r["id"] for r in rows], now)
            for r in rows:
                if r["msg_type"] not in conversation.WRITTEN:
                    continue
                case = await _latest_case(tx, r["openid"])
                if case is None or case["number"] in told:
                    continue  # several messages at once are one piece of news
                told.add(case["number"])
                text = texts("console.live.new_message", number=case["number"])
                events.append(_about(case, "message", {"number": case["number"], "text": text}))
            failed = await self._failed_ids(tx)
            for row_id in sorted(set(failed) - self._failed):
                r = await tx.one("SELECT openid, last_error FROM outbox WHERE id = :id", id=row_id)
                case = await _latest_case(tx, r["openid"]) if r is not None else None
                if case is not None:
                    reason = (r["last_error"] or "")[:120]
                    text = texts("console.live.failure", number=case["number"], reason=reason)
                    events.append(_about(case, "failure", {"number": case["number"], "text": text}))
            self._failed = set(failed)
        return events

    @staticmethod
    async def _failed_ids(tx) -> list[int]:
        rows = await tx.all(
            "SELECT id FROM outbox WHERE status = 'failed' ORDER BY id DESC LIMIT :n", n=FAILED_SEEN_LIMIT
        )
        return [r["id"] for r in rows]


async def _latest_case(tx, openid: str):
    return await tx.one(
        "SELECT number, lead_unit, co_units FROM cases WHERE openid = :openid ORDER BY id DESC LIMIT 1", openid=openid
    )


def _about(case, kind: str, data: dict) -> Event:
    return Event(kind, case["number"], case["lead_unit"], tuple(unjs(case["co_units"]) or ()), data)


FEED = web.AppKey("console_live_feed", LiveFeed)


async def _still_signed_in(request: web.Request, token: str, operator: Operator) -> bool:
    """The stream's session is still live and its operator's role and unit are as they were."""
    async with request.app[keys.STORE].read() as tx:
        session = await operators.session(tx, token, now=request.app[keys.CLOCK].now())
    return session is not None and (session.operator.role, session.operator.unit) == (operator.role, operator.unit)


async def stream(request: web.Request) -> web.StreamResponse:
    """The event stream of one browser: `event: case|message|failure`, `data: {json}`; a comment every
    KEEPALIVE_SECONDS so proxies keep the connection open."""
    operator = session_of(request).operator
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    feed = request.app[FEED]
    listener = feed.subscribe(operator)
    token = request.cookies.get(auth.COOKIE, "")
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                event = "keepalive"
            if event is None:
                break  # the server is stopping: the browser reconnects to another instance or later
            if not await _still_signed_in(request, token, operator):
                break  # signed out, expired or changed since the stream opened: it ends with the session
            if event == "keepalive":
                await response.write(b": keepalive\n\n")
                continue
            data = event.data
            if not roles.sees_phone(operator):
                mark = request.app[keys.TEXTS]("privacy.phone_hidden")
                data = {k: privacy.hide_phones(v, mark=mark) if k in _FREE_TEXT else v for k, v in data.items()}
            payload = json.dumps(data, ensure_ascii=False)
            await response.write(f"event: {event.kind}\ndata: {payload}\n\n".encode())
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        feed.unsubscribe(listener)
    return response
