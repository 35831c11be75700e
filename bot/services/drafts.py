"""Half-finished dialogs (drafts), one per resident, saved after every step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.fast import Tx, js, unjs


@dataclass
class Draft:
    openid: str
    dialog: str
    started_at: datetime
    updated_at: datetime
    step: int = 0
    # "step": answering steps[step]; "confirm": at the summary; "resume": idle, offered back to the resident.
    mode: str = "step"
    editing: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    failed_tries: int = 0
    needs_human: bool = False
    discarded: bool = False

    def restart(self, now: datetime) -> None:
        self.step, self.mode, self.editing, self.data, self.failed_tries = 0, "step", False, {}, 0
        self.started_at = self.updated_at = now


_COLUMNS = "openid, dialog, step, mode, editing, data, failed_tries, needs_human, started_at, updated_at"


def _from_row(tx: Tx, row) -> Draft:
    return Draft(
        openid=row["openid"],
        dialog=row["dialog"],
        step=row["step"],
        mode=row["mode"],
        editing=bool(row["editing"]),
        data=unjs(row["data"]),
        failed_tries=row["failed_tries"],
        needs_human=bool(row["needs_human"]),
        started_at=tx.dt(row["started_at"]),
        updated_at=tx.dt(row["updated_at"]),
    )


async def get(tx: Tx, openid: str) -> Draft | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM dialog_states WHERE openid = :openid", openid=openid)
    return None if row is None else _from_row(tx, row)


def begin(openid: str, dialog: str, now: datetime) -> Draft:
    """A new draft (replacing any other when saved)."""
    return Draft(openid=openid, dialog=dialog, started_at=now, updated_at=now)


_SAVE = f"""
INSERT INTO dialog_states ({_COLUMNS})
VALUES (:openid, :dialog, :step, :mode, :editing, :data, :failed_tries, :needs_human, :started_at, :updated_at)
ON CONFLICT (openid) DO UPDATE SET dialog = excluded.dialog, step = excluded.step, mode = excluded.mode,
    editing = excluded.editing, data = excluded.data, failed_tries = excluded.failed_tries,
    needs_human = excluded.needs_human, started_at = excluded.started_at, updated_at = excluded.updated_at"""


async def save(tx: Tx, d: Draft) -> None:
    await tx.run(
        _SAVE,
        openid=d.openid,
        dialog=d.dialog,
        step=d.step,
        mode=d.mode,
        editing=d.editing,
        data=js(d.data),
        failed_tries=d.failed_tries,
        needs_human=d.needs_human,
        started_at=tx.ts(d.started_at),
        updated_at=tx.ts(d.updated_at),
    )


async def discard(tx: Tx, d: Draft) -> None:
    d.discarded = True
    await tx.run("DELETE FROM dialog_states WHERE openid = :openid", openid=d.openid)


async def purge(tx: Tx, untouched_since: datetime) -> list[str]:
    """Delete drafts untouched since then; the dialog of each one deleted (counted as expired, bot/metrics.py)."""
    rows = await tx.all(
        "DELETE FROM dialog_states WHERE updated_at < :cutoff RETURNING dialog", cutoff=tx.ts(untouched_since)
    )
    return [row[0] for row in rows]


async def listing(tx: Tx, *, human_only: bool = False, limit: int = 100) -> list[Draft]:
    """Drafts oldest first; `human_only`: those whose resident asked for a person (人工), for staff."""
    where = "WHERE needs_human = :yes" if human_only else ""
    rows = await tx.all(
        f"SELECT {_COLUMNS} FROM dialog_states {where} ORDER BY updated_at LIMIT :limit", yes=True, limit=limit
    )
    return [_from_row(tx, r) for r in rows]
