"""The `frontdoor` command: serve, chat, db, cases."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from bot.config import ConfigError, Settings, load_settings
from storage.db import sqlite_file


def _settings(args) -> Settings:
    return load_settings(args.config)


def cmd_serve(args) -> int:
    from aiohttp import web

    from bot.app import api_base_url, build_app, local_base_url
    from storage import migrate

    settings = _settings(args)
    if args.port:
        settings = replace(settings, server=replace(settings.server, port=args.port))
    if settings.is_sqlite:
        migrate.upgrade(settings.database.url)  # the embedded default looks after itself
    else:
        pending = migrate.pending(settings.database.url)
        if pending:
            print(f"数据库结构不是最新（缺少迁移 {pending}）：请先运行 `frontdoor db upgrade`。", file=sys.stderr)
            return 2
    base = local_base_url(settings)
    where = sqlite_file(settings.database.url)
    print("frontdoor 已启动 / frontdoor is running")
    print(
        f"  webhook      {base}{settings.webhook.path}  (token {settings.wechat.token!r}, "
        f"{'safe mode' if settings.wechat.encoding_aes_key else 'plain mode'})"
    )
    print(
        f"  WeChat API   {api_base_url(settings)}"
        + (f"  (built-in fake; sent messages: {api_base_url(settings)}/sent)" if settings.wechat.fake_api else "")
    )
    print(f"  data         {where.resolve() if where else settings.database.url.split('@')[-1]}")
    print("  try it       frontdoor chat")
    sys.stdout.flush()
    web.run_app(build_app(settings), host=settings.server.host, port=settings.server.port, print=None, access_log=None)
    return 0


def cmd_db(args) -> int:
    from storage import migrate

    settings = _settings(args)
    if args.action == "upgrade":
        migrate.upgrade(settings.database.url)
        print("数据库已升级到最新结构 / database upgraded to head")
    else:
        pending = migrate.pending(settings.database.url)
        print("up to date" if not pending else f"pending: {pending}")
    return 0


def cmd_cases(args) -> int:
    from bot.cases_cli import list_cases, show_case

    settings = _settings(args)
    if args.action == "list":
        return asyncio.run(list_cases(settings, status=args.status, as_json=args.json, limit=args.limit))
    return asyncio.run(show_case(settings, args.number, as_json=args.json))


def cmd_drafts(args) -> int:
    from bot.cases_cli import list_drafts

    return asyncio.run(list_drafts(_settings(args), human_only=args.human, as_json=args.json))


def cmd_chat(args) -> int:
    from bot.chat import run_chat

    return asyncio.run(run_chat(_settings(args), url=args.url, openid=args.openid, mode=args.mode))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="frontdoor", description="信访/接诉 WeChat front door")
    p.add_argument("--config", help="config TOML (default: ./config.toml if present, else built-in defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade", "check"])
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
    cases.set_defaults(func=cmd_cases)

    drafts = sub.add_parser("drafts", help="unfinished dialogs, e.g. residents waiting for a person (人工)")
    drafts.add_argument("action", choices=["list"])
    drafts.add_argument("--human", action="store_true", help="only drafts whose resident asked for a person")
    drafts.add_argument("--json", action="store_true")
    drafts.set_defaults(func=cmd_drafts)

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
