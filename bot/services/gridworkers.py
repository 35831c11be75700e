"""Grid workers (网格员): who they are, which areas they look after, and binding their WeChat account.

A worker is bound by a one-time invite code: `frontdoor gridworker invite NAME --grid G` prints it, the
worker sends 绑定 <code> to the account, and from then on that openid is the worker's (residents.is_gridworker
tells the router without a lookup). Only the code's sha256 is stored; a code works once, until it expires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.services.areas import Area, all_areas, covers, grids_under
from storage.fast import Tx

# Eight characters a worker can read off a screen and type on a phone: no 0/O, 1/I/L.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


class WorkerError(Exception):
    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True)
class Worker:
    id: int
    name: str
    openid: str | None
    operator_name: str | None
    active: bool
    area_ids: tuple[int, ...]


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def _load(tx: Tx, row) -> Worker:
    areas = await tx.all("SELECT area_id FROM grid_worker_areas WHERE worker_id = :id ORDER BY area_id", id=row["id"])
    return Worker(
        row["id"], row["name"], row["openid"], row["operator_name"], bool(row["active"]), tuple(a[0] for a in areas)
    )


_COLUMNS = "id, name, openid, operator_name, active"


async def by_name(tx: Tx, name: str) -> Worker | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM grid_workers WHERE name = :name", name=name)
    return None if row is None else await _load(tx, row)


async def by_openid(tx: Tx, openid: str) -> Worker | None:
    row = await tx.one(
        f"SELECT {_COLUMNS} FROM grid_workers WHERE openid = :openid AND active = :yes", openid=openid, yes=True
    )
    return None if row is None else await _load(tx, row)


async def by_operator(tx: Tx, operator_name: str) -> Worker | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM grid_workers WHERE operator_name = :name", name=operator_name)
    return None if row is None else await _load(tx, row)


async def by_id(tx: Tx, worker_id: int) -> Worker | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM grid_workers WHERE id = :id", id=worker_id)
    return None if row is None else await _load(tx, row)


async def listing(tx: Tx) -> list[Worker]:
    rows = await tx.all(f"SELECT {_COLUMNS} FROM grid_workers ORDER BY name")
    return [await _load(tx, r) for r in rows]


async def ensure(tx: Tx, name: str, *, now: datetime, operator_name: str | None = None) -> Worker:
    """The worker of this name, created when new; `operator_name` links their console account."""
    name = " ".join(name.split())
    if not name or len(name) > 64:
        raise WorkerError("bad_name")
    found = await by_name(tx, name)
    if found is None:
        await tx.run(
            "INSERT INTO grid_workers (name, operator_name, active, created_at) VALUES (:name, :op, :yes, :now)",
            name=name,
            op=operator_name,
            yes=True,
            now=tx.ts(now),
        )
    elif operator_name and found.operator_name != operator_name:
        await tx.run("UPDATE grid_workers SET operator_name = :op WHERE id = :id", op=operator_name, id=found.id)
    return await by_name(tx, name)  # type: ignore[return-value]


async def assign(tx: Tx, worker: Worker, area: Area) -> bool:
    """The worker looks after `area` (a grid or a community) too; False when they already did."""
    if area.id in worker.area_ids:
        return False
    await tx.run(
        "INSERT INTO grid_worker_areas (worker_id, area_id) VALUES (:w, :a) ON CONFLICT DO NOTHING",
        w=worker.id,
        a=area.id,
    )
    return True


async def unassign(tx: Tx, worker: Worker, area: Area) -> bool:
    return bool(
        await tx.run("DELETE FROM grid_worker_areas WHERE worker_id = :w AND area_id = :a", w=worker.id, a=area.id)
    )


async def invite(tx: Tx, worker: Worker, *, now: datetime, valid: timedelta) -> str:
    """A new one-time code for this worker (earlier unused ones stay valid until they expire)."""
    code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
    await tx.run(
        "INSERT INTO grid_invites (code_hash, worker_id, created_at, expires_at) VALUES (:h, :w, :now, :until)",
        h=_hash(code),
        w=worker.id,
        now=tx.ts(now),
        until=tx.ts(now + valid),
    )
    return code


def looks_like_code(text: str) -> bool:
    text = text.strip().upper()
    return len(text) == CODE_LENGTH and all(c in _ALPHABET for c in text)


async def bind(tx: Tx, code: str, openid: str, *, now: datetime) -> Worker:
    """Spend the code: its worker's account is `openid` from now on. WorkerError bad_code / expired / used /
    taken (this WeChat account is already another worker's)."""
    row = await tx.one(
        "SELECT id, worker_id, expires_at, used_at FROM grid_invites WHERE code_hash = :h"
        + ("" if tx.is_sqlite else " FOR UPDATE"),
        h=_hash(code),
    )
    if row is None:
        raise WorkerError("bad_code")
    if row["used_at"] is not None:
        raise WorkerError("used")
    if tx.dt(row["expires_at"]) <= now:
        raise WorkerError("expired")
    other = await by_openid(tx, openid)
    if other is not None and other.id != row["worker_id"]:
        raise WorkerError("taken", name=other.name)
    if (
        await tx.run(
            "UPDATE grid_invites SET used_at = :now WHERE id = :id AND used_at IS NULL", now=tx.ts(now), id=row["id"]
        )
        != 1
    ):
        raise WorkerError("used")
    # A worker no longer active may still hold this account: it is the new worker's now (the key is unique).
    await tx.run(
        "UPDATE grid_workers SET openid = NULL WHERE openid = :openid AND id <> :id", openid=openid, id=row["worker_id"]
    )
    previous = await tx.val("SELECT openid FROM grid_workers WHERE id = :id", id=row["worker_id"])
    if previous and previous != openid:  # a new phone: the old account is no longer the worker's
        await tx.run("UPDATE residents SET is_gridworker = :no WHERE openid = :openid", no=False, openid=previous)
    await tx.run(
        "UPDATE grid_workers SET openid = :openid, bound_at = :now, active = :yes WHERE id = :id",
        openid=openid,
        now=tx.ts(now),
        yes=True,
        id=row["worker_id"],
    )
    await tx.run(
        "INSERT INTO residents (openid, subscribed, created_at, is_gridworker) VALUES (:openid, :yes, :now, :yes) "
        "ON CONFLICT (openid) DO UPDATE SET is_gridworker = excluded.is_gridworker",
        openid=openid,
        yes=True,
        now=tx.ts(now),
    )
    return await by_id(tx, row["worker_id"])  # type: ignore[return-value]


async def grids_of(tx: Tx, worker: Worker) -> list[int]:
    return grids_under(await all_areas(tx), list(worker.area_ids))


async def may_target(tx: Tx, worker: Worker, area_id: int) -> bool:
    """A worker puts polls to the areas they look after, and to the parts of those."""
    return covers(await all_areas(tx), list(worker.area_ids), area_id)
