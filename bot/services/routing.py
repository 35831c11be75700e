"""分流 and 三事分解: which unit a case goes to by the office's rules, and which tier (小事 / 民事 / 难事) —
and so which pool of handlers (法律明白人 / 法律顾问 / 司法机构) — it belongs to. The rules are configuration."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import Settings
from bot.services import lifecycle
from bot.services.cases import add_ledger
from bot.texts import Texts
from storage.fast import Tx


def tier_for(settings: Settings, category: str) -> str | None:
    return settings.routing.table("tiers").get(category)


def pool_for(settings: Settings, tier: str | None) -> str | None:
    return settings.routing.table("pools").get(tier) if tier else None


async def route(tx: Tx, number: str, *, by: str, clock: Clock, settings: Settings, texts: Texts) -> lifecycle.Moved:
    """Assign the case to the lead unit its category maps to (the assign move: ledgered, resident told)."""
    category = await tx.val("SELECT category FROM cases WHERE number = :number", number=number)
    if category is None:
        raise lifecycle.MoveRefused(texts("lifecycle.not_found", number=number))
    unit = settings.routing.table("units").get(category)
    if unit is None:
        raise lifecycle.MoveRefused(texts("routing.no_rule", category=category))
    request = lifecycle.Request(action="assign", number=number, by=by, unit=unit)
    return await lifecycle.move(tx, request, clock=clock, settings=settings, texts=texts)


async def set_tier(tx: Tx, number: str, tier: str, *, by: str, clock: Clock, settings: Settings, texts: Texts) -> str:
    """Re-tier a case by hand (a 小事 that turned out to be a 难事); the pool it now goes to."""
    pool = pool_for(settings, tier)
    if pool is None:
        raise lifecycle.MoveRefused(
            texts("routing.unknown_tier", tier=tier, tiers="、".join(settings.routing.table("pools")))
        )
    now = clock.now()
    case_id = await tx.val(
        "UPDATE cases SET tier = :tier, updated_at = :now WHERE number = :number RETURNING id",
        tier=tier,
        now=tx.ts(now),
        number=number,
    )
    if case_id is None:
        raise lifecycle.MoveRefused(texts("lifecycle.not_found", number=number))
    await add_ledger(tx, case_id, now, by, "tier_set", note=f"{tier}（{pool}）")
    return pool
