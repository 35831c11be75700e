"""分流 by the office's rules and 三事分解 tiers: configuration decides, staff can override, the ledger shows it."""

import asyncio
import os

import pytest

from bot.app import STORE
from bot.cli import main
from bot.config import ConfigError, load_settings
from bot.services import routing
from bot.texts import Texts
from tests.conftest import start_harness
from tests.test_console import grid_tree, put_in_grid
from tests.test_lifecycle import case_of, do, filed


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


def by_street(*rules: str):
    return load_settings(os.devnull, env={"FRONTDOOR_ROUTING_BY_STREET": ",".join(rules)})


def test_the_street_a_place_names_routes_before_the_category():
    settings = by_street(
        "云城街道/物业与停车=云城街道办事处", "云城街道/*=云城街道综治中心", "百花湖镇/*=百花湖镇人民政府"
    )
    assert routing.lead_unit(settings, "物业与停车", "白云区云城街道某某小区3栋") == "云城街道办事处"
    assert routing.lead_unit(settings, "邻里纠纷", "云城街道某某小区3栋") == "云城街道综治中心"  # the street's "*"
    assert routing.lead_unit(settings, "土地与征收", "观山湖区百花湖镇某村") == "百花湖镇人民政府"
    assert routing.lead_unit(settings, "物业与停车", "某某路12号") == "街道办事处"  # no street named: the category's
    # The longest street name the place holds wins, whatever the order of the rules.
    settings = by_street("云城/*=甲单位", "云城街道/*=乙单位")
    assert routing.lead_unit(settings, "其他", "云城街道某某小区") == "乙单位"


def test_a_street_rule_must_name_a_street_and_a_known_category():
    with pytest.raises(ConfigError, match=r"routing\.by_street"):
        by_street("物业与停车=云城街道办事处")
    with pytest.raises(ConfigError, match=r"routing\.by_street.*complaint\.categories"):
        by_street("云城街道/停车=云城街道办事处")


async def test_route_sends_a_case_to_the_unit_of_its_street(db_url, clock, monkeypatch):
    env = {"FRONTDOOR_ROUTING_BY_STREET": "云城街道/物业与停车=云城街道办事处"}
    async with start_harness(db_url, clock, **env) as h:
        number = await filed(h, "o_local")  # filed at 云城街道某某小区3栋
        for name, value in {**env, "FRONTDOOR_DATABASE_URL": h.settings.database.url}.items():
            monkeypatch.setenv(name, value)
        assert await asyncio.to_thread(main, ["cases", "accept", number, "--by", "受理员"]) == 0
        assert await asyncio.to_thread(main, ["cases", "route", number, "--by", "分流员"]) == 0
        assert (await case_of(h, number)).lead_unit == "云城街道办事处"


def by_grid(*rules: str, streets: tuple[str, ...] = ()):
    env = {"FRONTDOOR_ROUTING_BY_GRID": ",".join(rules)}
    if streets:
        env["FRONTDOOR_ROUTING_BY_STREET"] = ",".join(streets)
    return load_settings(os.devnull, env=env)


def test_the_grid_routes_before_the_street_and_the_most_specific_node_wins():
    settings = by_grid(
        "G1/物业与停车=第一网格物业专班",
        "C1/*=云城社区居委会",
        "C1/土地与征收=云城社区土地专班",
        "S1/邻里纠纷=中华路街道综治中心",
        streets=("云城街道/*=云城街道办事处",),
    )
    g1 = ["G1", "C1", "S1", "D1"]  # a grid of 云城社区, its street and district
    g2 = ["G2", "C1", "S1", "D1"]
    g3 = ["G3", "C2", "S1", "D1"]  # another community of the street
    place = "云城街道某某小区3栋"
    assert routing.lead_unit(settings, "物业与停车", place, g1) == "第一网格物业专班"  # before by_street
    assert routing.lead_unit(settings, "邻里纠纷", place, g1) == "云城社区居委会"  # the community's "*" covers G1
    assert routing.lead_unit(settings, "物业与停车", place, g2) == "云城社区居委会"  # … and G2
    assert routing.lead_unit(settings, "土地与征收", place, g2) == "云城社区土地专班"  # its category before its "*"
    assert routing.lead_unit(settings, "邻里纠纷", place, g3) == "中华路街道综治中心"  # the street's rule
    assert routing.lead_unit(settings, "其他", place, g3) == "云城街道办事处"  # no grid rule: by_street
    assert routing.lead_unit(settings, "其他", "某某路12号", g3) == "信访局"  # … then the category's
    assert routing.lead_unit(settings, "物业与停车", place) == "云城街道办事处"  # filed from no grid


def test_a_grid_rule_must_name_a_code_and_a_known_category():
    for bad in ("物业与停车=某单位", "第一 网格/*=某单位", "G1/*=", "G" * 33 + "/*=某单位"):
        with pytest.raises(ConfigError, match=r"routing\.by_grid"):
            by_grid(bad)
    with pytest.raises(ConfigError, match=r"routing\.by_grid.*complaint\.categories"):
        by_grid("G1/停车=某单位")
    assert by_grid("C-3_a/*=某单位").routing.by_grid == ("C-3_a/*=某单位",)


async def test_route_sends_a_case_to_the_unit_of_its_grid(db_url, clock):
    env = {
        "FRONTDOOR_ROUTING_BY_GRID": "G2/*=第二网格工作站,C1/物业与停车=云城社区居委会",
        "FRONTDOOR_ROUTING_BY_STREET": "云城街道/物业与停车=云城街道办事处",
    }
    async with start_harness(db_url, clock, **env) as h:
        tree = await grid_tree(h)
        numbers = {}
        for code in ("G1", "G2", "G3"):
            numbers[code] = await filed(h, f"o_grid_{code}")  # 物业与停车 at 云城街道某某小区3栋
            await put_in_grid(h, numbers[code], tree[code])
        numbers["none"] = await filed(h, "o_grid_none")
        for number in numbers.values():
            await do(h, "accept", number)
            async with h.app[STORE].write() as tx:
                await routing.route(tx, number, by="分流员", clock=h.clock, settings=h.settings, texts=Texts())
        units = {code: (await case_of(h, number)).lead_unit for code, number in numbers.items()}
    assert units == {
        "G1": "云城社区居委会",  # the community's rule covers its grids …
        "G2": "第二网格工作站",  # … the grid's own is more specific
        "G3": "云城街道办事处",  # another community: by the street its place names
        "none": "云城街道办事处",
    }
