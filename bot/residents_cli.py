"""`frontdoor residents forget OPENID [--yes] [--by NAME]`: detach a person from their WeChat account on their
request, exactly as unfollowing does (bot/services/forget.py; README "Personal data and unfollowing").

Without --yes it first shows what would be detached (worked out in a transaction that is rolled back) and asks.
The openid is printed masked, as everywhere in the CLI; an openid nothing is held for is refused (exit 1)."""

from __future__ import annotations

import asyncio
import sys

from bot.clock import Clock
from bot.config import Settings
from bot.outbox_cli import mask
from bot.services import forget
from bot.services.forget import Forgotten
from bot.texts import Texts
from storage.fast import open_store


class _Preview(Exception):
    """Raised inside the preview's transaction so that it rolls back, carrying what it would have done."""

    def __init__(self, result: Forgotten):
        super().__init__("preview")
        self.result = result


def register(sub) -> None:
    """Add `frontdoor residents …` to the command's subparsers."""
    residents = sub.add_parser("residents", help="residents' personal data: detach one from their WeChat account")
    residents_sub = residents.add_subparsers(dest="action", required=True)
    fg = residents_sub.add_parser(
        "forget",
        help="on the person's request: drop their profile, drafts, pending messages and chat; keep the case "
        "records (detached from the account) as unfollowing does",
    )
    fg.add_argument("openid", help="the person's openid (e.g. from `frontdoor cases show NUMBER`)")
    fg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    fg.add_argument("--by", default="cli", help="who does it, for the cases' ledger (default: cli)")
    residents.set_defaults(func=cmd_residents)


def cmd_residents(args) -> int:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    if not _database_ready(settings, texts):
        return 2
    return forget_cli(settings, texts, args.openid, yes=args.yes, by=args.by)


async def _run(settings: Settings, texts: Texts, openid: str, *, by: str, commit: bool, clock: Clock) -> Forgotten:
    store = open_store(settings.database.url, pool_size=1)
    try:
        # Taking turns with the resident's own messages, which the server handles under the same key.
        async with store.write(serial=openid) as tx:
            done = await forget.forget_resident(tx, openid, clock.now(), reason="request", texts=texts, by=by)
            if not commit:
                raise _Preview(done)
            return done
    except _Preview as preview:
        return preview.result
    finally:
        await store.close()


def report_lines(texts: Texts, done: Forgotten) -> list[str]:
    numbers = "（" + "、".join(done.cases) + "）" if done.cases else ""
    lines = [texts("cli.forget.resident" if done.resident else "cli.forget.no_resident")]
    lines.append(texts("cli.forget.cases", count=len(done.cases), numbers=numbers))
    lines.append(texts("cli.forget.drafts", count=done.drafts))
    lines.append(texts("cli.forget.pushes", count=done.pushes_cancelled))
    lines.append(texts("cli.forget.outbox", count=done.outbox_removed))
    lines.append(texts("cli.forget.subscriptions", count=done.subscriptions))
    lines.append(texts("cli.forget.ballots", count=done.ballots))
    lines.append(texts("cli.forget.recipients", count=done.poll_recipients))
    lines.append(texts("cli.forget.messages", count=done.messages))
    if done.messages_stripped:
        minutes = int(forget.RETRY_GRACE.total_seconds() // 60)
        lines.append(texts("cli.forget.stripped", count=done.messages_stripped, minutes=minutes))
    if done.gridworkers:
        lines.append(texts("cli.forget.gridworkers", names="、".join(done.gridworkers)))
    return lines


def forget_cli(settings: Settings, texts: Texts, openid: str, *, yes: bool, by: str, clock: Clock | None = None) -> int:
    """Exit code 0 once detached; 1 for an openid nothing is held for, or when the operator did not confirm."""
    clock = clock or Clock()
    shown = mask(openid)
    if not yes:
        preview = asyncio.run(_run(settings, texts, openid, by=by, commit=False, clock=clock))
        if not _told(texts, "cli.forget.preview", shown, preview):
            return 1
        try:
            answer = input(texts("cli.forget.confirm"))
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes", "是"):
            print(texts("cli.forget.cancelled"), file=sys.stderr)
            return 1
    done = asyncio.run(_run(settings, texts, openid, by=by, commit=True, clock=clock))
    return 0 if _told(texts, "cli.forget.done", shown, done) else 1


def _told(texts: Texts, heading: str, shown: str, forgotten: Forgotten) -> bool:
    """Prints what is (or would be) detached; False, saying so, when nothing is held for the openid."""
    if not forgotten.known:
        print(texts("cli.forget.unknown", openid=shown), file=sys.stderr)
        return False
    print(texts(heading, openid=shown))
    print("\n".join(report_lines(texts, forgotten)))
    return True
