"""`frontdoor operator add NAME --role ROLE [--unit U]`, `operator passwd NAME`, `operator list`: the staff who
sign in to the console. Passwords are asked twice at the terminal (or read from stdin with --password-stdin,
for scripts) and stored only as argon2 hashes."""

from __future__ import annotations

import getpass
import sys

from bot.cases_cli import print_json, reading, write_once
from bot.clock import Clock
from bot.config import Settings
from bot.services import operators
from bot.texts import Texts


def read_password(texts: Texts, *, from_stdin: bool) -> str | None:
    """The new password, or None (after saying why) when it is too short or the two entries differ."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(texts("cli.operator.password_prompt"))
        again = getpass.getpass(texts("cli.operator.password_again"))
        if password != again:
            print(texts("cli.operator.password_mismatch"), file=sys.stderr)
            return None
    if len(password) < operators.MIN_PASSWORD_LENGTH:
        print(texts("cli.operator.password_short", length=operators.MIN_PASSWORD_LENGTH), file=sys.stderr)
        return None
    return password


async def add(settings: Settings, texts: Texts, name: str, role: str, unit: str | None, *, from_stdin: bool) -> int:
    password = read_password(texts, from_stdin=from_stdin)
    if password is None:
        return 1
    hashed = operators.hash_password(password)
    try:
        code, added = await write_once(
            settings, lambda tx: operators.add(tx, name, role, hashed, unit=unit, now=Clock().now()), ()
        )
    except operators.OperatorError as exc:
        print(texts(f"cli.operator.{exc.key}", **exc.values), file=sys.stderr)
        return 1
    if not code:
        print(texts("cli.operator.added", name=added.name, role=texts(f"role.{added.role}"), unit=added.unit or "-"))
    return code


async def passwd(settings: Settings, texts: Texts, name: str, *, from_stdin: bool) -> int:
    password = read_password(texts, from_stdin=from_stdin)
    if password is None:
        return 1
    hashed = operators.hash_password(password)
    code, changed = await write_once(
        settings, lambda tx: operators.set_password(tx, name, hashed, now=Clock().now()), ()
    )
    if code:
        return code
    if not changed:
        print(texts("cli.operator.not_found", name=name), file=sys.stderr)
        return 1
    print(texts("cli.operator.password_set", name=name))
    return 0


async def list_operators(settings: Settings, texts: Texts, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        found = await operators.listing(tx)
    now = Clock().now()
    rows = [
        {
            "name": a.operator.name,
            "role": a.operator.role,
            "unit": a.operator.unit,
            "active": a.active,
            "locked": bool(a.locked_until and a.locked_until > now),
        }
        for a in found
    ]
    if as_json:
        return print_json(rows)
    if not rows:
        print(texts("cli.operator.none"))
    for row in rows:
        locked = texts("cli.operator.locked") if row["locked"] else ""
        print(
            texts(
                "cli.operator.line",
                name=row["name"],
                role=texts(f"role.{row['role']}"),
                unit=row["unit"] or "-",
                locked=locked,
            )
        )
    return 0
