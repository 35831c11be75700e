"""分流 and 三事分解: which unit a case goes to by the office's rules, and which tier (小事 / 民事 / 难事) —
and so which pool of handlers (法律明白人 / 法律顾问 / 司法机构) — it belongs to. The rules are configuration."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import Settings
from bot.services import lifecycle
from bot.services.cases import add_ledger
from bot.texts import Texts
from storage.fast import Tx


def lead_unit(settings: Settings, category: str, place: str) -> str | None:
    """The unit the rules give a case: 属地 first — the street (街道/乡镇) its place names, that street's rule for
    the category, else its rule for every category ("*") — then the category's unit. Where the place names
    several streets of the rules, the longest name wins (白云区云城街道 over 云城)."""
    streets: dict[str, dict[str, str]] = {}
    for entry in settings.routing.by_street:
        street, rest = entry.split("/", 1)
        rule_category, unit = rest.split("=", 1)
        streets.setdefault(street.strip(), {})[rule_category.strip()] = unit.strip()
    for street in sorted((s for s in streets if s in place), key=len, reverse=True):
        rules = streets[street]
        if unit := rules.get(category) or rules.get("*"):
            return unit
    return settings.routing.table("units").get(category)


def tier_for(settings: Settings, category: str) -> str | None:
    return settings.routing.table("tiers").get(category)


def pool_for(settings: Settings, tier: str | None) -> str | None:
    return settings.routing.table("pools").get(tier) if tier else None


async def route(tx: Tx, number: str, *, by: str, clock: Clock, settings: Settings, texts: Texts) -> lifecycle.Moved:
    """Assign the case to the lead unit the rules give it (`lead_unit`; the assign move: ledgered, resident told)."""
    case = await tx.one("SELECT category, place_label FROM cases WHERE number = :number", number=number)
    if case is None:
        raise lifecycle.MoveRefused(texts("lifecycle.not_found", number=number))
    category = case["category"]
    unit = lead_unit(settings, category, case["place_label"] or "")
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
