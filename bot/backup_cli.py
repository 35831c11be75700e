"""`frontdoor db backup PATH [--force]`: a consistent copy of the embedded SQLite database, taken while
`frontdoor serve` runs (storage/backup.py). On PostgreSQL it says which pg_dump command to run instead."""

from __future__ import annotations

import sqlite3
import sys

from bot.config import Settings
from bot.texts import Texts
from storage.backup import BackupRefused, backup_sqlite, pg_dump_command
from storage.db import sqlite_file

PG_DUMP_FILE = "frontdoor.dump"


def backup(settings: Settings, texts: Texts, path: str | None, *, force: bool = False) -> int:
    url = settings.database.url
    if not settings.is_sqlite:
        dest = path or PG_DUMP_FILE
        print(texts("cli.backup.use_pg_dump", command=pg_dump_command(url, dest), path=dest), file=sys.stderr)
        return 2
    if not path:
        print(texts("cli.backup.usage"), file=sys.stderr)
        return 2
    try:
        written = backup_sqlite(url, path, force=force, busy_timeout_s=settings.database.sqlite_busy_timeout_ms / 1000)
    except BackupRefused as exc:
        print(texts(f"cli.backup.{exc.key}", **exc.values), file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(texts("cli.backup.failed", error=exc), file=sys.stderr)
        return 1
    database = sqlite_file(url).resolve()
    print(texts("cli.backup.done", path=written.resolve(), size=written.stat().st_size, database=database))
    return 0
