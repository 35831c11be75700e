"""分流 by the office's rules and 三事分解 tiers: configuration decides, staff can override, the ledger shows it."""

import asyncio
import os

import pytest

from bot.cli import main
from bot.config import ConfigError, load_settings
from tests.test_lifecycle import case_of, filed


async def test_a_new_case_gets_its_categorys_tier(harness):
    number = await filed(harness)  # 物业与停车
    assert (await case_of(harness, number)).tier == "民事"


async def test_route_assigns_by_the_rules_and_tier_can_be_changed(harness, capsys, monkeypatch):
    number = await filed(harness, "o_routed")
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", harness.settings.database.url)
    assert await asyncio.to_thread(main, ["cases", "accept", number, "--by", "受理员"]) == 0
    assert await asyncio.to_thread(main, ["cases", "route", number, "--by", "分流员"]) == 0
    case = await case_of(harness, number)
    assert (case.status, case.lead_unit, case.events[-1].actor) == ("assigned", "街道办事处", "分流员")
    assert await asyncio.to_thread(main, ["cases", "tier", number, "难事", "--by", "督办科"]) == 0
    case = await case_of(harness, number)
    assert case.tier == "难事" and (case.events[-1].action, case.events[-1].note) == ("tier_set", "难事（司法机构）")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["cases", "tier", number, "大事", "--by", "督办科"]) == 1
    assert "小事、民事、难事" in capsys.readouterr().err


def test_a_tier_without_a_pool_is_a_configuration_error():
    with pytest.raises(ConfigError, match=r"routing\.tiers"):
        load_settings(os.devnull, env={"FRONTDOOR_ROUTING_TIERS": "邻里纠纷=小事,其他=大事"})
