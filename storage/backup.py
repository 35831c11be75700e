"""Backups of the database while the server runs (`frontdoor db backup`).

SQLite (the embedded mode) runs in WAL mode: committed transactions sit in `frontdoor.db-wal` until a checkpoint
moves them into `frontdoor.db`, and the server checkpoints while it writes. Copying the files with cp while it
runs can take the database file and its WAL at different moments: a copy that is missing recent cases, or
corrupt. `backup_sqlite` uses SQLite's online backup API instead: one step inside a read transaction, so the
copy is the database as of one commit, while the server goes on writing (WAL lets a reader run beside the
writer). The copy is checked (`PRAGMA quick_check`), switched to a single self-contained file (journal_mode
DELETE) and renamed into place only when complete.

PostgreSQL has its own tool for that: `pg_dump -Fc` (one snapshot, also online); `pg_dump_command` says how.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from storage.db import sqlite_file


class BackupRefused(Exception):
    """Why no backup was written: `key` names the reason (a text under [cli.backup]), `values` its details."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


def backup_sqlite(url: str, dest: str | os.PathLike, *, force: bool = False, busy_timeout_s: float = 30.0) -> Path:
    """A consistent copy of the SQLite database at `url` in the file `dest`, taken online. Refuses an existing
    `dest` unless `force`. The path written."""
    source = sqlite_file(url)
    if source is None:
        raise BackupRefused("not_sqlite")
    if not source.is_file():
        raise BackupRefused("no_database", path=source.resolve())
    target = Path(dest)
    if target.is_dir():
        raise BackupRefused("is_dir", path=target.resolve())
    # The live database is also its WAL, shared-memory and journal files: writing over any of them loses
    # commits. samefile also sees a hard link or another mount of the same file.
    for live in (source, *(source.with_name(source.name + tail) for tail in ("-wal", "-shm", "-journal"))):
        same = target.exists() and live.exists() and os.path.samefile(target, live)
        if same or target.resolve() == live.resolve():
            raise BackupRefused("same_file", path=source.resolve())
    if target.exists() and not force:
        raise BackupRefused("exists", path=target.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    try:
        # mode=rw: never create an empty database where the live one was expected.
        live = sqlite3.connect(source.resolve().as_uri() + "?mode=rw", uri=True, timeout=busy_timeout_s)
        with closing(live), closing(sqlite3.connect(tmp, isolation_level=None)) as copy:
            live.backup(copy)  # pages=-1: the whole database in one step, from one read snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise BackupRefused("check_failed", detail=verdict)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL (postgresql+asyncpg://…) as pg_dump and pg_restore take it, without the password
    (they read it from PGPASSWORD or ~/.pgpass, or ask). Query options libpq knows stay — a socket directory in
    `host`, `sslmode` … — so the command reaches the same server the same way; asyncpg's `ssl` becomes libpq's
    `sslmode`; the driver's other options go."""
    p = make_url(url)
    query = {k: v for k, v in p.query.items() if k in _LIBPQ_OPTIONS}
    if "ssl" in p.query and "sslmode" not in query:
        query["sslmode"] = p.query["ssl"]
    bare = URL.create("postgresql", username=p.username, host=p.host, port=p.port, database=p.database, query=query)
    return bare.render_as_string(hide_password=False)


_LIBPQ_OPTIONS = frozenset(
    {"host", "hostaddr", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "connect_timeout"}
    | {"application_name", "options", "target_session_attrs", "gssencmode", "passfile", "service"}
)


def pg_dump_args(url: str, dest: str) -> list[str]:
    """pg_dump in its custom format (-Fc): compressed, one snapshot of the whole database, taken online."""
    return ["pg_dump", "-Fc", "-f", dest, libpq_url(url)]


def pg_restore_args(url: str, dump: str) -> list[str]:
    """pg_restore into an empty database at `url`; --no-owner: the tables belong to whoever restores."""
    return ["pg_restore", "--no-owner", "-d", libpq_url(url), dump]


def pg_dump_command(url: str, dest: str) -> str:
    return shlex.join(pg_dump_args(url, dest))
