"""分流 and 三事分解: which unit a case goes to by the office's rules, and which tier (小事 / 民事 / 难事) —
and so which pool of handlers (法律明白人 / 法律顾问 / 司法机构) — it belongs to. The rules are configuration."""

from __future__ import annotations

from collections.abc import Sequence

from bot.clock import Clock
from bot.config import Settings
from bot.services import areas, lifecycle
from bot.services.cases import add_ledger
from bot.texts import Texts
from storage.fast import Tx


def _rules(entries: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Entries of the form key/category=unit, as key → category (or "*") → unit."""
    rules: dict[str, dict[str, str]] = {}
    for entry in entries:
        key, rest = entry.split("/", 1)
        rule_category, unit = rest.split("=", 1)
        rules.setdefault(key.strip(), {})[rule_category.strip()] = unit.strip()
    return rules


def lead_unit(settings: Settings, category: str, place: str, grid_codes: Sequence[str] = ()) -> str | None:
    """The unit the rules give a case: 属地 first — the resident's grid (`grid_codes`: the codes of their grid
    and of the nodes above it, the grid first), the rule of the most specific node that has one for the
    category, or for every category ("*"); then the street (街道/乡镇) its place names, that street's rule for
    the category, else its rule for every category; then the category's unit. Where the place names several
    streets of the rules, the longest name wins (白云区云城街道 over 云城)."""
    by_grid = _rules(settings.routing.by_grid)
    for code in grid_codes:
        rules = by_grid.get(code, {})
        if unit := rules.get(category) or rules.get("*"):
            return unit
    streets = _rules(settings.routing.by_street)
    for street in sorted((s for s in streets if s in place), key=len, reverse=True):
        rules = streets[street]
        if unit := rules.get(category) or rules.get("*"):
            return unit
    return settings.routing.table("units").get(category)


def grid_codes(tree: list[areas.Area], grid_id: int | None) -> list[str]:
    """The codes of this grid and of its community, street and district, the grid first."""
    by_id = {a.id: a for a in tree}
    codes: list[str] = []
    node = by_id.get(grid_id) if grid_id is not None else None
    while node is not None and node.code not in codes:
        codes.append(node.code)
        node = by_id.get(node.parent_id)
    return codes


def tier_for(settings: Settings, category: str) -> str | None:
    return settings.routing.table("tiers").get(category)


def pool_for(settings: Settings, tier: str | None) -> str | None:
    return settings.routing.table("pools").get(tier) if tier else None


async def route(tx: Tx, number: str, *, by: str, clock: Clock, settings: Settings, texts: Texts) -> lifecycle.Moved:
    """Assign the case to the lead unit the rules give it (`lead_unit`, with the grid the resident filed from;
    the assign move: ledgered, resident told)."""
    case = await tx.one("SELECT category, place_label, grid_id FROM cases WHERE number = :number", number=number)
    if case is None:
        raise lifecycle.MoveRefused(texts("lifecycle.not_found", number=number))
    category = case["category"]
    codes = []
    if case["grid_id"] is not None and settings.routing.by_grid:
        codes = grid_codes(await areas.all_areas(tx), case["grid_id"])
    unit = lead_unit(settings, category, case["place_label"] or "", codes)
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
