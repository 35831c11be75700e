"""Staff who sign in to the console: their accounts (argon2 password hashes, lockout after repeated failures),
their sessions, and the audit log of what they did.

Hashing is deliberately slow (argon2id, ~50 ms of CPU): callers run `hash_password` / `verify_password` in a
thread, never on the event loop. A session cookie carries a random token; the database keeps only its sha256,
so a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from storage.fast import Conflict, Tx

ROLES = ("admin", "dispatcher", "unit", "supervisor", "gridworker", "viewer")
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verifying against this when the name is unknown takes as long as a real check: timing says nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class OperatorError(Exception):
    """A refused account change: `key` names the reason (texts [cli.operator]), `values` fill it in."""

    def __init__(self, key: str, **values: str):
        super().__init__(key, values)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Operator:
    id: int
    name: str
    role: str
    unit: str | None


@dataclass(frozen=True)
class Account:
    """An operator as sign-in sees them."""

    operator: Operator
    password_hash: str
    active: bool
    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True)
class Session:
    id: int
    operator: Operator
    csrf_token: str
    expires_at: datetime
    last_seen_at: datetime


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (pass None for an unknown name)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_OPERATOR = "SELECT id, name, role, unit, password_hash, active, failed_logins, locked_until FROM operators"


def _operator(r) -> Operator:
    return Operator(r["id"], r["name"], r["role"], r["unit"])


async def add(tx: Tx, name: str, role: str, password_hash: str, *, unit: str | None, now: datetime) -> Operator:
    """A new operator. Raises OperatorError for an unknown role, a unit handler without a unit, a name taken."""
    if role not in ROLES:
        raise OperatorError("unknown_role", role=role, roles=", ".join(ROLES))
    if role == "unit" and not unit:
        raise OperatorError("unit_required")
    try:
        op_id = await tx.val(
            "INSERT INTO operators (name, role, unit, password_hash, active, failed_logins, created_at, "
            "password_changed_at) VALUES (:name, :role, :unit, :hash, :yes, 0, :now, :now) RETURNING id",
            name=name,
            role=role,
            unit=unit or None,
            hash=password_hash,
            yes=True,
            now=tx.ts(now),
        )
    except Conflict:
        raise OperatorError("exists", name=name) from None
    return Operator(op_id, name, role, unit or None)


async def account(tx: Tx, name: str) -> Account | None:
    r = await tx.one(f"{_OPERATOR} WHERE name = :name", name=name)
    if r is None:
        return None
    return Account(_operator(r), r["password_hash"], bool(r["active"]), r["failed_logins"], tx.dt(r["locked_until"]))


async def set_password(tx: Tx, name: str, password_hash: str, *, now: datetime) -> bool:
    """A new password; it also lifts a lockout and signs the operator out everywhere. False if no such name."""
    op_id = await tx.val(
        "UPDATE operators SET password_hash = :hash, password_changed_at = :now, failed_logins = 0, "
        "locked_until = NULL WHERE name = :name RETURNING id",
        hash=password_hash,
        now=tx.ts(now),
        name=name,
    )
    if op_id is None:
        return False
    await tx.run("DELETE FROM operator_sessions WHERE operator_id = :id", id=op_id)
    return True


async def listing(tx: Tx) -> list[Account]:
    rows = await tx.all(f"{_OPERATOR} ORDER BY name")
    return [
        Account(_operator(r), r["password_hash"], bool(r["active"]), r["failed_logins"], tx.dt(r["locked_until"]))
        for r in rows
    ]


async def signed_in(tx: Tx, operator_id: int) -> None:
    await tx.run("UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE id = :id", id=operator_id)


async def reserve_attempt(
    tx: Tx, operator_id: int, *, now: datetime, max_failures: int, lock_for: timedelta
) -> datetime | None:
    """Count a sign-in attempt before its password is checked: None if it may be checked, else until when the
    account is locked. The count is reset by a success (`signed_in`) and when the lock is set."""
    attempts = await tx.val(
        "UPDATE operators SET failed_logins = failed_logins + 1 "
        "WHERE id = :id AND (locked_until IS NULL OR locked_until <= :now) RETURNING failed_logins",
        id=operator_id,
        now=tx.ts(now),
    )
    if attempts is None:  # locked already
        return tx.dt(await tx.val("SELECT locked_until FROM operators WHERE id = :id", id=operator_id))
    if attempts <= max_failures:
        return None
    return await _lock(tx, operator_id, now + lock_for)  # more attempts under way than the lockout allows


async def sign_in_failed(
    tx: Tx, operator_id: int, *, now: datetime, max_failures: int, lock_for: timedelta
) -> datetime | None:
    """A checked password was wrong (its attempt counted already): at max_failures the account locks until the
    time returned (else None)."""
    attempts = await tx.val("SELECT failed_logins FROM operators WHERE id = :id", id=operator_id)
    if attempts is None or attempts < max_failures:
        return None
    return await _lock(tx, operator_id, now + lock_for)


async def _lock(tx: Tx, operator_id: int, until: datetime) -> datetime:
    await tx.run(
        "UPDATE operators SET locked_until = :until, failed_logins = 0 WHERE id = :id",
        until=tx.ts(until),
        id=operator_id,
    )
    return until


# --- sessions -----------------------------------------------------------------------------------------------------


async def open_session(tx: Tx, operator_id: int, *, now: datetime, lifetime: timedelta) -> tuple[str, str]:
    """A new session: (the cookie's token, the session's CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await tx.run(
        "INSERT INTO operator_sessions (token_hash, operator_id, csrf_token, created_at, last_seen_at, expires_at) "
        "VALUES (:hash, :op, :csrf, :now, :now, :until)",
        hash=token_hash(token),
        op=operator_id,
        csrf=csrf,
        now=tx.ts(now),
        until=tx.ts(now + lifetime),
    )
    return token, csrf


async def session(tx: Tx, token: str, *, now: datetime) -> Session | None:
    """The live session of this cookie token (its operator still active), or None."""
    r = await tx.one(
        "SELECT s.id, s.csrf_token, s.expires_at, s.last_seen_at, o.id AS op_id, o.name, o.role, o.unit "
        "FROM operator_sessions s JOIN operators o ON o.id = s.operator_id "
        "WHERE s.token_hash = :hash AND s.expires_at > :now AND o.active = :yes",
        hash=token_hash(token),
        now=tx.ts(now),
        yes=True,
    )
    if r is None:
        return None
    operator = Operator(r["op_id"], r["name"], r["role"], r["unit"])
    return Session(r["id"], operator, r["csrf_token"], tx.dt(r["expires_at"]), tx.dt(r["last_seen_at"]))


async def touch_session(tx: Tx, session_id: int, *, now: datetime, lifetime: timedelta) -> None:
    """Sliding expiry: an operator at work stays signed in; an idle browser is signed out after `lifetime`."""
    await tx.run(
        "UPDATE operator_sessions SET last_seen_at = :now, expires_at = :until WHERE id = :id",
        now=tx.ts(now),
        until=tx.ts(now + lifetime),
        id=session_id,
    )


async def close_session(tx: Tx, token: str) -> None:
    await tx.run("DELETE FROM operator_sessions WHERE token_hash = :hash", hash=token_hash(token))


async def purge_sessions(tx: Tx, *, now: datetime) -> int:
    return await tx.run("DELETE FROM operator_sessions WHERE expires_at <= :now", now=tx.ts(now))


# --- the audit log ----------------------------------------------------------------------------------------------


async def audit(
    tx: Tx,
    *,
    now: datetime,
    operator: str,
    action: str,
    outcome: str = "ok",
    target: str | None = None,
    detail: str | None = None,
    ip: str | None = None,
) -> None:
    """One line of the audit log: who did what to which case, and whether it was allowed."""
    await tx.run(
        "INSERT INTO audit_log (at, operator, action, target, outcome, detail, ip) "
        "VALUES (:now, :operator, :action, :target, :outcome, :detail, :ip)",
        now=tx.ts(now),
        operator=operator[:64],
        action=action[:40],
        target=target[:80] if target else None,
        outcome=outcome,
        detail=detail,
        ip=ip[:64] if ip else None,
    )
