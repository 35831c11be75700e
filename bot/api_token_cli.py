"""`frontdoor api-token add NAME --role ROLE [--unit U]`, `api-token revoke NAME`, `api-token list [--json]`: the
tokens other city platforms call /api/v1 and /open311/v2 with (bot/api/).

`add` prints the new token once — alone on standard output, so a script can take it
(`TOKEN=$(frontdoor api-token add 12345平台 --role viewer)`), with the sentence for the operator on standard
error. It is stored only as its sha256: a lost token is revoked and a new one added. Nothing prints a token
again."""

from __future__ import annotations

import asyncio
import sys

from bot.cases_cli import print_json, reading, write_once
from bot.clock import Clock
from bot.config import Settings
from bot.services import api_tokens
from bot.services.operators import ROLES
from bot.texts import Texts


def register(sub) -> None:
    """Add `frontdoor api-token …` to the command's subparsers."""
    tokens = sub.add_parser("api-token", help="tokens of the JSON API (/api/v1) and Open311 (/open311/v2)")
    tokens_sub = tokens.add_subparsers(dest="action", required=True)
    add_ = tokens_sub.add_parser("add", help="a new token, printed once")
    add_.add_argument("name", help="who calls with it, e.g. the platform's name (the audit log says api:NAME)")
    add_.add_argument("--role", required=True, choices=ROLES, help="acts as an operator of this role")
    add_.add_argument("--unit", help="a unit token's unit (承办单位): it sees that unit's cases only")
    revoke_ = tokens_sub.add_parser("revoke", help="the token stops working at once")
    revoke_.add_argument("name")
    ls = tokens_sub.add_parser("list", help="the tokens (never the tokens themselves)")
    ls.add_argument("--json", action="store_true")
    tokens.set_defaults(func=cmd_api_token)


def cmd_api_token(args) -> int:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    if not _database_ready(settings, texts):
        return 2
    if args.action == "add":
        return asyncio.run(add(settings, texts, args.name, args.role, args.unit))
    if args.action == "revoke":
        return asyncio.run(revoke(settings, texts, args.name))
    return asyncio.run(list_tokens(settings, texts, as_json=args.json))


async def add(settings: Settings, texts: Texts, name: str, role: str, unit: str | None) -> int:
    try:
        code, done = await write_once(
            settings, lambda tx: api_tokens.add(tx, name, role, unit=unit, now=Clock().now()), ()
        )
    except api_tokens.TokenError as exc:
        print(texts(f"cli.api_token.{exc.key}", **exc.values), file=sys.stderr)
        return 1
    if code:
        return code
    row, token = done
    print(
        texts("cli.api_token.added", name=row.name, role=texts(f"role.{row.role}"), unit=row.unit or "-"),
        file=sys.stderr,
    )
    print(token, flush=True)
    return 0


async def revoke(settings: Settings, texts: Texts, name: str) -> int:
    try:
        await write_once(settings, lambda tx: api_tokens.revoke(tx, name, now=Clock().now()), ())
    except api_tokens.TokenError as exc:
        print(texts(f"cli.api_token.{exc.key}", **exc.values), file=sys.stderr)
        return 1
    print(texts("cli.api_token.revoked", name=name))
    return 0


def _local(settings: Settings, moment) -> str | None:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else None


async def list_tokens(settings: Settings, texts: Texts, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        found = await api_tokens.listing(tx)
    if as_json:
        times = lambda moment: moment.isoformat() if moment else None  # noqa: E731
        return print_json(
            [
                {
                    "name": t.name,
                    "role": t.role,
                    "unit": t.unit,
                    "active": t.revoked_at is None,
                    "created_at": times(t.created_at),
                    "last_used_at": times(t.last_used_at),
                    "revoked_at": times(t.revoked_at),
                }
                for t in found
            ]
        )
    if not found:
        print(texts("cli.api_token.none"))
    for t in found:
        revoked = texts("cli.api_token.revoked_mark", at=_local(settings, t.revoked_at)) if t.revoked_at else ""
        print(
            texts(
                "cli.api_token.line",
                name=t.name,
                role=texts(f"role.{t.role}"),
                unit=t.unit or "-",
                created=_local(settings, t.created_at),
                used=_local(settings, t.last_used_at) or texts("cli.api_token.never_used"),
                revoked=revoked,
            )
        )
    return 0
