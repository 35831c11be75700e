"""Tokens other city platforms call the JSON API and Open311 with (`frontdoor api-token add|revoke|list`).

A token is random (`secrets.token_urlsafe(32)`), shown once when it is made and stored only as its sha256, so a
copy of the database calls nothing. It carries a role (bot.services.operators.ROLES) and, for a unit token, a
unit: the API lets it do exactly what an operator of that role and unit may do in the console. A revoked token
keeps its row and its name — the audit log knows it as "api:<name>" — so a name is never given out twice.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.services.operators import ROLES, token_hash
from storage.fast import Conflict, Tx

# The audit log and the ledger know a token's actions as "api:<name>" (64 characters at most there).
ACTOR_PREFIX = "api:"
MAX_NAME_LENGTH = 48
_NAME = re.compile(r"^[^\s:/\\]+$")


class TokenError(Exception):
    """A refused token change: `key` names the reason (texts [cli.api_token]), `values` fill it in."""

    def __init__(self, key: str, **values: str):
        super().__init__(key, values)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    role: str
    unit: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        """Who the audit log and the ledger say did it."""
        return ACTOR_PREFIX + self.name


_TOKEN = "SELECT id, name, role, unit, created_at, last_used_at, revoked_at FROM api_tokens"


def _token(tx: Tx, r) -> ApiToken:
    return ApiToken(
        r["id"],
        r["name"],
        r["role"],
        r["unit"],
        tx.dt(r["created_at"]),
        tx.dt(r["last_used_at"]),
        tx.dt(r["revoked_at"]),
    )


async def add(tx: Tx, name: str, role: str, *, unit: str | None, now: datetime) -> tuple[ApiToken, str]:
    """A new token: (its row, the token itself — to be shown once and never again). Raises TokenError for a bad
    name, an unknown role, a unit token without a unit (or a unit on another role), a name already used."""
    name, unit = name.strip(), (unit or "").strip() or None
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise TokenError("bad_name", name=name, max=str(MAX_NAME_LENGTH))
    if role not in ROLES:
        raise TokenError("unknown_role", role=role, roles=", ".join(ROLES))
    if role == "unit" and not unit:
        raise TokenError("unit_required")
    if role != "unit" and unit:
        raise TokenError("unit_not_allowed", role=role)
    token = secrets.token_urlsafe(32)
    try:
        await tx.run(
            "INSERT INTO api_tokens (name, token_hash, role, unit, created_at) "
            "VALUES (:name, :hash, :role, :unit, :now)",
            name=name,
            hash=token_hash(token),
            role=role,
            unit=unit,
            now=tx.ts(now),
        )
    except Conflict:
        raise TokenError("exists", name=name) from None
    row = await tx.one(f"{_TOKEN} WHERE name = :name", name=name)
    return _token(tx, row), token


async def revoke(tx: Tx, name: str, *, now: datetime) -> ApiToken:
    """Revoke the token of this name from now on. Raises TokenError when there is none or it is revoked."""
    found = await tx.one(f"{_TOKEN} WHERE name = :name", name=name)
    if found is None:
        raise TokenError("not_found", name=name)
    if found["revoked_at"] is not None:
        raise TokenError("already_revoked", name=name)
    await tx.run("UPDATE api_tokens SET revoked_at = :now WHERE id = :id", now=tx.ts(now), id=found["id"])
    return _token(tx, await tx.one(f"{_TOKEN} WHERE id = :id", id=found["id"]))


async def listing(tx: Tx) -> list[ApiToken]:
    return [_token(tx, r) for r in await tx.all(f"{_TOKEN} ORDER BY name")]


async def authenticate(tx: Tx, token: str) -> ApiToken | None:
    """The live (not revoked) token given, or None."""
    if not token:
        return None
    r = await tx.one(f"{_TOKEN} WHERE token_hash = :hash AND revoked_at IS NULL", hash=token_hash(token))
    return None if r is None else _token(tx, r)


async def touch(tx: Tx, token_id: int, *, now: datetime, every: timedelta) -> bool:
    """Record a use of the token — unless one was recorded less than `every` ago (the condition is in the
    UPDATE, so two requests or two instances at once still write it once). True when it was written."""
    changed = await tx.run(
        "UPDATE api_tokens SET last_used_at = :now "
        "WHERE id = :id AND (last_used_at IS NULL OR last_used_at <= :before)",
        now=tx.ts(now),
        id=token_id,
        before=tx.ts(now - every),
    )
    return changed == 1
