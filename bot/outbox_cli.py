"""`frontdoor outbox list [--failed] [--json]`: the messages to residents, newest first, openids masked."""

from __future__ import annotations

from bot.cases_cli import print_json, reading
from bot.config import Settings
from bot.texts import Texts

_LIST = """
SELECT id, created_at, openid, kind, status, attempts, last_error FROM outbox
WHERE (:failed = 0 OR status = 'failed') ORDER BY id DESC LIMIT :limit"""


def mask(openid: str) -> str:
    """An openid identifies a person: operators see its first four characters only."""
    return openid[:4] + "…"


async def list_outbox(settings: Settings, texts: Texts, *, failed: bool, as_json: bool, limit: int = 100) -> int:
    async with reading(settings) as tx:
        rows = await tx.all(_LIST, failed=1 if failed else 0, limit=limit)
        found = [
            {
                "id": row["id"],
                "created": tx.dt(row["created_at"]).astimezone(settings.tz).isoformat(timespec="seconds"),
                "resident": mask(row["openid"]),
                "kind": row["kind"],
                "status": row["status"],
                "attempts": row["attempts"],
                "last_error": row["last_error"],
            }
            for row in rows
        ]
    if as_json:
        return print_json(found)
    if not found:
        print(texts("cli.outbox.none_failed" if failed else "cli.outbox.none"))
        return 0
    print(texts("cli.outbox.head"))
    for item in found:
        created = item["created"][:16].replace("T", " ")
        status = texts(f"cli.outbox.status_{item['status']}") if item["status"] in ("pending", "sent", "failed") else ""
        print(
            texts(
                "cli.outbox.line",
                id=item["id"],
                created=created,
                openid=item["resident"],
                kind=item["kind"],
                status=status or item["status"],
                attempts=item["attempts"],
                error=item["last_error"] or "-",
            )
        )
    return 0
