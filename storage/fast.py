"""The hot path's database access: plain SQL on the driver, one transaction per inbound message.

Why not the SQLAlchemy session here: measured on this 2-core machine, one message's transaction (five
statements) cost ~2.7 ms of CPU through the async ORM on aiosqlite, ~0.4 ms through sync SQLAlchemy Core and
~0.035 ms through sqlite3 itself — and the webhook must answer well over a thousand messages a second. So the
webhook path speaks SQL to the driver directly; the schema, migrations and everything off the hot path (CLI,
outbox, console) stay with SQLAlchemy and read the very same rows.

SQL is written once, with `:name` parameters, in the dialect SQLite and PostgreSQL share (ON CONFLICT,
RETURNING). Values cross in Python types: `ts()`/`dt()` for times (SQLite stores the text SQLAlchemy writes),
`js()`/`unjs()` for JSON.

SQLite: one connection owned by the event loop. A transaction runs start to finish without blocking on I/O
(WAL, synchronous=NORMAL: a commit does not fsync), so running it on the loop costs less than handing it to a
thread. It is opened with BEGIN IMMEDIATE; if another process holds the write lock the loop is not blocked —
the attempt is retried after a short async sleep, up to the busy timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage.db import sqlite_file


class Conflict(Exception):
    """A unique key already exists (e.g. another instance stored this message first)."""


class Tx:
    """One transaction. Rows come back addressable by column name."""

    is_sqlite: bool

    async def one(self, sql: str, **params: Any) -> Any: ...

    async def all(self, sql: str, **params: Any) -> list: ...

    async def val(self, sql: str, **params: Any) -> Any: ...

    async def run(self, sql: str, **params: Any) -> int: ...

    def ts(self, moment: datetime | None) -> Any: ...

    def dt(self, value: Any) -> datetime | None: ...


def js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def unjs(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def in_list(tx: Tx, ids: list[int], name: str = "i") -> tuple[str, dict[str, Any]]:
    """What goes inside `IN (…)` for these ids, and its parameters. SQLite: `:i0, :i1, …`. PostgreSQL: one
    array parameter, so that the statement's text is the same whatever the number of ids — asyncpg prepares
    each new text (a round trip and a plan), which made an outbox flush of 200 rows cost ~20 ms instead of ~2."""
    if tx.is_sqlite:
        return ", ".join(f":{name}{n}" for n in range(len(ids))), {f"{name}{n}": v for n, v in enumerate(ids)}
    return f"SELECT unnest(CAST(:{name} AS integer[]))", {name: list(ids)}


# ---- SQLite ----------------------------------------------------------------------------------------------

_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # what SQLAlchemy's SQLite DateTime writes and reads back


class _SqliteTx(Tx):
    is_sqlite = True

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # Every call turns a unique key's violation into Conflict: an INSERT … RETURNING goes through one() or val().
    def _execute(self, sql: str, params: dict) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise Conflict(str(exc)) from exc
            raise

    async def one(self, sql: str, **params: Any) -> Any:
        return self._execute(sql, params).fetchone()

    async def all(self, sql: str, **params: Any) -> list:
        return self._execute(sql, params).fetchall()

    async def val(self, sql: str, **params: Any) -> Any:
        row = self._execute(sql, params).fetchone()
        return None if row is None else row[0]

    async def run(self, sql: str, **params: Any) -> int:
        return self._execute(sql, params).rowcount

    def ts(self, moment: datetime | None) -> Any:
        return None if moment is None else moment.astimezone(UTC).strftime(_SQLITE_TS)

    def dt(self, value: Any) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteStore:
    is_sqlite = True

    def __init__(self, path: str, busy_timeout_ms: int = 5000):
        self.path = path
        self.busy_timeout = busy_timeout_ms / 1000
        self._writer = self._connect()
        self._reader = self._connect()
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=0")  # never block the event loop: we wait asynchronously instead
        return conn

    async def _begin(self, conn: sqlite3.Connection, statement: str) -> None:
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    @asynccontextmanager
    async def write(self, serial: str | None = None) -> AsyncIterator[Tx]:
        """`serial`: transactions naming the same key run one after another. Here every write transaction
        already does (BEGIN IMMEDIATE), so the key needs nothing more."""
        async with self._lock:  # one transaction at a time on the loop's connection
            await self._begin(self._writer, "BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._writer)
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        await self._begin(self._reader, "BEGIN")
        try:
            yield _SqliteTx(self._reader)
        finally:
            self._reader.execute("ROLLBACK")

    async def optimize(self) -> None:
        """Keep the planner's statistics fresh (SQLite gathers none by itself): without them the inbox's to-do
        view took ~145 ms at 300,000 cases instead of ~5 ms. Cheap when nothing changed much."""
        async with self._lock:
            self._writer.execute("PRAGMA optimize")

    async def close(self) -> None:
        async with self._lock:
            self._writer.execute("PRAGMA optimize")  # what SQLite's documentation asks of a closing connection
            self._writer.close()
            self._reader.close()


# ---- PostgreSQL ------------------------------------------------------------------------------------------

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class _Compiled:
    """`:name` SQL turned into asyncpg's `$n`, remembered per statement text."""

    cache: dict[str, tuple[str, list[str]]] = {}  # noqa: RUF012 - a process-wide cache on purpose

    @classmethod
    def get(cls, sql: str) -> tuple[str, list[str]]:
        found = cls.cache.get(sql)
        if found is None:
            names: list[str] = []

            def number(match: re.Match) -> str:
                if match.group(1) not in names:
                    names.append(match.group(1))
                return f"${names.index(match.group(1)) + 1}"

            found = cls.cache[sql] = (_PARAM.sub(number, sql), names)
        return found


class _PgTx(Tx):
    is_sqlite = False

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    @staticmethod
    def _args(sql: str, params: dict) -> tuple[str, list]:
        text, names = _Compiled.get(sql)
        return text, [params[n] for n in names]

    async def one(self, sql: str, **params: Any) -> Any:
        text, args = self._args(sql, params)
        try:
            return await self.conn.fetchrow(text, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from exc

    async def all(self, sql: str, **params: Any) -> list:
        text, args = self._args(sql, params)
        try:
            return await self.conn.fetch(text, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from exc

    async def val(self, sql: str, **params: Any) -> Any:
        text, args = self._args(sql, params)
        try:
            return await self.conn.fetchval(text, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from exc

    async def run(self, sql: str, **params: Any) -> int:
        text, args = self._args(sql, params)
        try:
            status = await self.conn.execute(text, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    def ts(self, moment: datetime | None) -> Any:
        return moment

    def dt(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


class PgStore:
    is_sqlite = False

    # How long a transaction waits for another one holding the same serial key: under the webhook's reply budget,
    # so a message stuck behind a frozen holder fails while the resident can still be told to send it again,
    # instead of holding a pooled connection for longer than WeChat waits.
    lock_timeout = "3s"
    # A connection that sits in a transaction doing nothing this long is ended by the server, with its locks: an
    # instance frozen mid-transaction (stopped, swapping, cut off) must not hold a resident's lock for ever.
    # Nothing here waits on anything else inside a transaction (sends happen outside them).
    idle_in_transaction_timeout = "30s"

    def __init__(self, dsn: str, pool_size: int):
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=1,
                        max_size=self.pool_size,
                        server_settings={"idle_in_transaction_session_timeout": self.idle_in_transaction_timeout},
                    )
        return self._pool

    @asynccontextmanager
    async def write(self, serial: str | None = None) -> AsyncIterator[Tx]:
        """`serial`: transactions naming the same key, from any process on this database, run one after
        another — a transaction-scoped advisory lock taken first, released by the commit or rollback (or by
        the server when a crashed instance's connection drops). Keys that hash alike merely take turns."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            if serial is not None:
                # One round trip: a bounded wait (a stuck holder must not pin this connection for ever), then
                # the lock.
                await conn.execute(_SERIAL, self.lock_timeout, serial)
            yield _PgTx(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            yield _PgTx(conn)

    async def optimize(self) -> None:
        """PostgreSQL's autovacuum keeps the statistics: nothing to do."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


# Advisory locks are keyed by two int4: a namespace, so frontdoor's keys never meet another application's,
# and the key's hash.
_SERIAL_NAMESPACE = 0x46440001
_SERIAL = f"SELECT set_config('lock_timeout', $1, true), pg_advisory_xact_lock({_SERIAL_NAMESPACE}, hashtext($2))"

Store = SqliteStore | PgStore


def open_store(url: str, *, pool_size: int = 10, sqlite_busy_timeout_ms: int = 5000) -> Store:
    path = sqlite_file(url)
    if url.startswith("sqlite"):
        if path is None:
            raise ValueError("the embedded store needs a SQLite file, not an in-memory database")
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(str(path), sqlite_busy_timeout_ms)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return PgStore(dsn, pool_size)
