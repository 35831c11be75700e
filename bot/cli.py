"""The `frontdoor` command: serve, chat, db, cases, drafts, operator, menu …"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace

from bot import logs
from bot.config import ConfigError, LoggingSettings, Settings, load_settings
from bot.texts import Texts
from storage.db import sqlite_file


def _settings(args) -> Settings:
    settings = load_settings(args.config)
    # Every command loads its settings here, so each logs as [logging] says from then on.
    logs.configure(settings.logging)
    return settings


def _texts(settings: Settings) -> Texts:
    return Texts(settings.texts.override_file)


def cmd_serve(args) -> int:
    from aiohttp import web

    from bot.app import CONSOLE_PREFIX, api_base_url, build_app, local_base_url
    from storage import migrate

    settings = _settings(args)
    texts = _texts(settings)
    if args.port:
        settings = replace(settings, server=replace(settings.server, port=args.port))
    if settings.is_sqlite:
        migrate.upgrade(settings.database.url)  # the embedded default looks after itself
    elif pending := migrate.pending(settings.database.url):
        print(texts("cli.pending_migrations", pending=", ".join(pending)), file=sys.stderr)
        return 2
    wx, api = settings.wechat, api_base_url(settings)
    where = sqlite_file(settings.database.url)
    print(
        texts(
            "cli.banner",
            webhook=local_base_url(settings) + settings.webhook.path,
            console=local_base_url(settings) + CONSOLE_PREFIX + "/",
            # The token is a shared secret: shown only while talking to the fake.
            token=wx.token if wx.fake_api else wx.token[:2] + "…",
            mode=texts("cli.mode_safe" if wx.encoding_aes_key else "cli.mode_plain"),
            api=api,
            fake_note=texts("cli.fake_note", sent=f"{api}/sent") if wx.fake_api else "",
            data=where.resolve() if where else settings.database.url.split("@")[-1],
        ),
        flush=True,
    )
    web.run_app(build_app(settings), host=settings.server.host, port=settings.server.port, print=None, access_log=None)
    return 0


def cmd_db(args) -> int:
    from storage import migrate

    settings = _settings(args)
    texts = _texts(settings)
    if args.action == "backup":
        from bot.backup_cli import backup

        return backup(settings, texts, args.path, force=args.force)
    if args.path or args.force:
        print(texts("cli.backup.usage"), file=sys.stderr)
        return 2
    if args.action == "upgrade":
        migrate.upgrade(settings.database.url)
        print(texts("cli.db_upgraded"))
        return 0
    pending = migrate.pending(settings.database.url)
    print(texts("cli.db_pending", pending=", ".join(pending)) if pending else texts("cli.db_current"))
    return 1 if pending else 0


def _database_ready(settings: Settings, texts: Texts) -> bool:
    """Reading commands must not create an empty database or trip over a missing table: say what to do."""
    from storage import migrate

    path = sqlite_file(settings.database.url)
    if path is not None and not path.exists():
        print(texts("cli.no_database", path=path.resolve()), file=sys.stderr)
        return False
    if pending := migrate.pending(settings.database.url):
        print(texts("cli.pending_migrations", pending=", ".join(pending)), file=sys.stderr)
        return False
    return True


def cmd_cases(args) -> int:
    from bot.cases_cli import list_cases, show_case

    settings = _settings(args)
    if not _database_ready(settings, _texts(settings)):
        return 2
    if args.action in ("route", "tier"):
        from bot.cases_cli import route_or_tier

        return asyncio.run(
            route_or_tier(
                settings, _texts(settings), args.action, args.number, by=args.by, tier=getattr(args, "tier", None)
            )
        )
    if args.action not in ("list", "show"):
        from bot.cases_cli import act

        options = {
            "by": args.by,
            "reason": args.reason,
            "unit": args.unit,
            "co_units": args.co or [],
            "text": args.text,
            "into": args.into,
            "days": args.days,
        }
        return asyncio.run(act(settings, _texts(settings), args.action, args.number, **options))
    if args.action == "list":
        return asyncio.run(
            list_cases(settings, _texts(settings), status=args.status, as_json=args.json, limit=args.limit)
        )
    return asyncio.run(show_case(settings, _texts(settings), args.number, as_json=args.json))


def cmd_drafts(args) -> int:
    from bot.cases_cli import list_drafts

    settings = _settings(args)
    if not _database_ready(settings, _texts(settings)):
        return 2
    return asyncio.run(list_drafts(settings, _texts(settings), human_only=args.human, as_json=args.json))


def cmd_deadlines(args) -> int:
    from bot.deadlines_cli import list_deadlines

    settings = _settings(args)
    if not _database_ready(settings, _texts(settings)):
        return 2
    options = {"due_soon": args.due_soon, "overdue": args.overdue, "as_json": args.json}
    return asyncio.run(list_deadlines(settings, _texts(settings), **options))


def cmd_calendar(args) -> int:
    from bot.deadlines_cli import import_calendar, list_calendar

    settings = _settings(args)
    if not _database_ready(settings, _texts(settings)):
        return 2
    if args.action == "import":
        with open(args.file, encoding="utf-8-sig") as fh:
            return asyncio.run(import_calendar(settings, _texts(settings), fh.read()))
    return asyncio.run(list_calendar(settings, _texts(settings), args.year))


def cmd_outbox(args) -> int:
    from bot.outbox_cli import list_outbox

    settings = _settings(args)
    if not _database_ready(settings, _texts(settings)):
        return 2
    return asyncio.run(list_outbox(settings, _texts(settings), failed=args.failed, as_json=args.json, limit=args.limit))


def cmd_operator(args) -> int:
    from bot import operator_cli

    settings = _settings(args)
    texts = _texts(settings)
    if not _database_ready(settings, texts):
        return 2
    if args.action == "add":
        return asyncio.run(
            operator_cli.add(settings, texts, args.name, args.role, args.unit, from_stdin=args.password_stdin)
        )
    if args.action == "passwd":
        return asyncio.run(operator_cli.passwd(settings, texts, args.name, from_stdin=args.password_stdin))
    return asyncio.run(operator_cli.list_operators(settings, texts, as_json=args.json))


def cmd_menu(args) -> int:
    from bot.menu import push_menu

    settings = _settings(args)
    return asyncio.run(push_menu(settings, _texts(settings), api_base=args.api))


def cmd_chat(args) -> int:
    from bot.chat import run_chat

    settings = _settings(args)
    return asyncio.run(run_chat(settings, _texts(settings), url=args.url, openid=args.openid, mode=args.mode))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="frontdoor", description="信访/接诉 WeChat front door")
    p.add_argument("--config", help="config TOML (default: ./config.toml if present, else built-in defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser(
        "db", help="database schema: upgrade to the latest, check (exit 1 when behind); backup PATH (SQLite, online)"
    )
    db.add_argument("action", choices=["upgrade", "check", "backup"])
    db.add_argument("path", nargs="?", help="backup: the file to write (PostgreSQL: prints the pg_dump command)")
    db.add_argument("--force", action="store_true", help="backup: overwrite an existing file")
    db.set_defaults(func=cmd_db)

    cases = sub.add_parser("cases", help="read cases")
    cases_sub = cases.add_subparsers(dest="action", required=True)
    ls = cases_sub.add_parser("list")
    ls.add_argument("--status")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = cases_sub.add_parser("show")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    from bot.services.lifecycle import MOVES

    for action in (name for name, spec in MOVES.items() if spec.service is None):
        step = cases_sub.add_parser(action, help=f"lifecycle: {action} a case")
        step.add_argument("number")
        step.add_argument("--by", required=True, help="the operator doing it (recorded on the ledger)")
        step.add_argument("--reason", help="why (required to refuse, return or reopen)")
        step.add_argument("--unit", help="assign: the lead unit")
        step.add_argument("--co", action="append", help="assign: a co-handling unit (repeatable)")
        step.add_argument("--text", help="reply: the answer to the resident")
        step.add_argument("--into", help="merge: the case number to merge into")
        step.add_argument("--days", type=int, help="extend: days added (default deadlines.extension_max_days)")
    route = cases_sub.add_parser("route", help="分流: assign to the lead unit the routing rules give its category")
    route.add_argument("number")
    route.add_argument("--by", required=True)
    tier = cases_sub.add_parser("tier", help="三事分解: set the tier (小事 / 民事 / 难事) by hand")
    tier.add_argument("number")
    tier.add_argument("tier")
    tier.add_argument("--by", required=True)
    cases.set_defaults(func=cmd_cases)
    from bot.dispatch_cli import register as register_dispatch

    register_dispatch(cases_sub, sub)  # 吹哨报到: cases summon|checkin, dispatch list
    from bot.longrun_cli import register as register_longrun

    register_longrun(cases_sub)  # 积案: cases long-running, cases leader

    drafts = sub.add_parser("drafts", help="unfinished dialogs, e.g. residents waiting for a person (人工)")
    drafts.add_argument("action", choices=["list"])
    drafts.add_argument("--human", action="store_true", help="only drafts whose resident asked for a person")
    drafts.add_argument("--json", action="store_true")
    drafts.set_defaults(func=cmd_drafts)

    dl = sub.add_parser("deadlines", help="supervisors: cases whose clock runs, due soon, overdue, escalated")
    dl.add_argument("action", choices=["list"])
    dl.add_argument("--due-soon", action="store_true", help="only cases past the warning share of their time")
    dl.add_argument("--overdue", action="store_true", help="only overdue cases")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_deadlines)

    cal = sub.add_parser("calendar", help="the working-day calendar: public holidays and make-up working days")
    cal_sub = cal.add_subparsers(dest="action", required=True)
    cal_import = cal_sub.add_parser("import", help="CSV lines date,kind (kind: holiday or workday)")
    cal_import.add_argument("file")
    cal_list = cal_sub.add_parser("list")
    cal_list.add_argument("--year", type=int, required=True)
    cal.set_defaults(func=cmd_calendar)

    outbox = sub.add_parser("outbox", help="messages to residents: waiting, sent, or failed with the reason")
    outbox.add_argument("action", choices=["list"])
    outbox.add_argument("--failed", action="store_true", help="only messages given up on")
    outbox.add_argument("--json", action="store_true")
    outbox.add_argument("--limit", type=int, default=100)
    outbox.set_defaults(func=cmd_outbox)

    from bot.services.operators import ROLES

    op = sub.add_parser("operator", help="the staff who sign in to the console (/console/)")
    op_sub = op.add_subparsers(dest="action", required=True)
    op_add = op_sub.add_parser("add", help="a new operator; the password is asked twice")
    op_add.add_argument("name")
    op_add.add_argument("--role", required=True, choices=ROLES)
    op_add.add_argument("--unit", help="a unit handler's unit (承办单位)")
    op_pw = op_sub.add_parser("passwd", help="set a new password (signs them out everywhere, lifts a lockout)")
    op_pw.add_argument("name")
    for sp in (op_add, op_pw):
        sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    op_list = op_sub.add_parser("list")
    op_list.add_argument("--json", action="store_true")
    op.set_defaults(func=cmd_operator)
    from bot.api_token_cli import register as register_api_token

    register_api_token(sub)  # api-token add|revoke|list: the tokens of /api/v1 and /open311/v2
    from bot.grids_cli import register as register_grids

    register_grids(sub)  # grids add|import|list|qrcode, gridworker add|assign|invite|list
    from bot.residents_cli import register as register_residents

    register_residents(sub)  # residents forget OPENID: detach a person from their WeChat account

    menu = sub.add_parser("menu", help="publish the custom menu (投诉 / 我的案件 / 帮助) through the WeChat API")
    menu.add_argument("action", choices=["push"])
    menu.add_argument("--api", help="API base URL (default: from settings; the fake of a running serve)")
    menu.set_defaults(func=cmd_menu)

    chat = sub.add_parser("chat", help="chat with a running frontdoor as a resident would")
    chat.add_argument("--url", help="frontdoor base URL (default: from settings)")
    chat.add_argument("--openid", default="o_chat_newcomer", help="the resident you play")
    chat.add_argument(
        "--mode",
        choices=["safe", "compat", "plain"],
        default=None,
        help="encryption (default: safe when an EncodingAESKey is set)",
    )
    chat.set_defaults(func=cmd_chat)
    from bot.fake_cli import register as register_fake

    register_fake(sub, _settings)  # fake-wechat: one fake WeChat API for several serve instances
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # The defaults until a command has read its settings ([logging]).
    logs.configure(LoggingSettings())
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(Texts()("cli.config_error", error=exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
