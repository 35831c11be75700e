"""Joint dispatch (街道吹哨、部门报到): summoned units check in in time, or are flagged late and escalated once.

Time is a FakeClock moved by the tests; every test runs on SQLite and on PostgreSQL."""

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import pytest

from bot.cli import main
from bot.config import ConfigError, load_settings
from bot.services import dispatch
from bot.services.deadlines import DeadlineWorker
from bot.services.dispatch import DispatchRefused
from bot.texts import Texts
from storage.fast import js, open_store

MINUTE = timedelta(minutes=1)
_counter = iter(range(1, 1_000_000))


async def new_case(store, clock, status: str = "assigned") -> str:
    """A case in the given status, written directly: these tests are about dispatch, not intake."""
    number = f"XF20261125-{next(_counter):04d}"
    async with store.write() as tx:
        await tx.run(
            "INSERT INTO cases (number, openid, category, place_label, description, photo_media_ids, voice_media_ids, "
            "video_media_ids, links, status, created_at, updated_at, co_units, deadline_state) VALUES (:number, "
            "'o_dispatch', '物业与停车', '云城街道某小区', '业主堵门抗议停车费', :empty, :empty, :empty, :empty, "
            ":status, :now, :now, :empty, 'ok')",
            number=number,
            empty=js([]),
            status=status,
            now=tx.ts(clock.now()),
        )
    return number


async def summon(store, clock, settings, number, units, urgency="黄", by="街道王主任", reason=None):
    async with store.write() as tx:
        return await dispatch.summon(
            tx, number, units, urgency=urgency, by=by, reason=reason, now=clock.now(), settings=settings, texts=Texts()
        )


async def check_in(store, clock, settings, number, unit, by="值班员"):
    async with store.write() as tx:
        return await dispatch.check_in(tx, number, unit, by=by, now=clock.now(), settings=settings, texts=Texts())


async def ledger(store, number: str) -> list[tuple[str, str, str | None]]:
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT e.action, e.actor, e.note FROM case_events e JOIN cases c ON c.id = e.case_id "
            "WHERE c.number = :n ORDER BY e.id",
            n=number,
        )
    return [(r["action"], r["actor"], r["note"]) for r in rows]


async def escalated_at(store, number: str):
    async with store.read() as tx:
        return tx.dt(await tx.val("SELECT escalated_at FROM cases WHERE number = :n", n=number))


async def summons_of(store, number: str) -> dict[str, dict]:
    async with store.read() as tx:
        return {s["unit"]: s for s in await dispatch.listing(tx, number=number)}


async def test_a_case_summons_units_each_due_within_its_grades_minutes(store, clock, settings):
    number = await new_case(store, clock, "in_progress")
    done = await summon(store, clock, settings, number, ["公安分局", "司法所", "公安分局"], reason="业主堵门")
    assert done.units == ["公安分局", "司法所"] and done.due_at == clock.now() + 30 * MINUTE
    found = await summons_of(store, number)
    assert {u: (s["urgency"], s["status"], s["late"], s["due_at"]) for u, s in found.items()} == {
        "公安分局": ("黄", "waiting", False, clock.now() + 30 * MINUTE),
        "司法所": ("黄", "waiting", False, clock.now() + 30 * MINUTE),
    }
    assert found["公安分局"]["summoned_by"] == "街道王主任" and found["公安分局"]["reason"] == "业主堵门"
    assert (await ledger(store, number))[-1] == (
        "summoned",
        "街道王主任",
        "黄色｜公安分局、司法所｜30 分钟内报到｜业主堵门",
    )
    assert Texts()("ledger.summoned") == "吹哨召集"

    red = replace(settings, dispatch=replace(settings.dispatch, urgency_minutes=("红=15",)))
    other = await new_case(store, clock, "accepted")
    assert (await summon(store, clock, red, other, ["城管局"], urgency="红")).due_at == clock.now() + 15 * MINUTE
    assert (await summon(store, clock, red, other, ["消防站"], urgency="蓝")).due_at == clock.now() + 30 * MINUTE


@pytest.mark.parametrize("status", ["pending", "replied", "closed", "refused", "withdrawn", "merged"])
async def test_only_a_case_being_handled_can_summon(store, clock, settings, status):
    number = await new_case(store, clock, status)
    with pytest.raises(DispatchRefused, match=f"案件 {number} 现在是“{Texts()(f'status.{status}')}”，不能吹哨召集"):
        await summon(store, clock, settings, number, ["公安分局"])
    assert await summons_of(store, number) == {}


async def test_bad_summons_are_refused_clearly_and_write_nothing(store, clock, settings):
    number = await new_case(store, clock, "reopened")
    with pytest.raises(DispatchRefused, match="没有找到案件 XF20991231-0001"):
        await summon(store, clock, settings, "XF20991231-0001", ["公安分局"])
    with pytest.raises(DispatchRefused, match="至少指定一个单位"):
        await summon(store, clock, settings, number, [" "])
    with pytest.raises(DispatchRefused, match="紧急程度须为 蓝、黄 或 红"):
        await summon(store, clock, settings, number, ["公安分局"], urgency="紫")
    await summon(store, clock, settings, number, ["公安分局"])
    with pytest.raises(DispatchRefused, match="已经召集过：公安分局"):
        await summon(store, clock, settings, number, ["司法所", "公安分局"])
    assert list(await summons_of(store, number)) == ["公安分局"]  # all or none
    assert [a for a, _, _ in await ledger(store, number)] == ["summoned"]


async def test_an_on_time_check_in_is_ledgered_once(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await new_case(store, clock)
    await summon(store, clock, settings, number, ["公安分局", "司法所"])
    clock.advance(minutes=29)
    done = await check_in(store, clock, settings, number, "公安分局")
    assert (done.unit, done.late) == ("公安分局", False)
    with pytest.raises(DispatchRefused, match=r"公安分局 已于 .* 报到过"):
        await check_in(store, clock, settings, number, "公安分局")
    with pytest.raises(DispatchRefused, match="没有召集 城管局"):
        await check_in(store, clock, settings, number, "城管局")
    s = (await summons_of(store, number))["公安分局"]
    assert (s["status"], s["late"], s["checked_in_at"], s["checked_in_by"]) == (
        "checked_in",
        False,
        clock.now(),
        "值班员",
    )
    assert (await ledger(store, number))[-1][:2] == ("checked_in", "值班员")
    clock.advance(minutes=2)
    assert await worker.tick() == 1  # only 司法所 is late
    assert [a for a, _, _ in await ledger(store, number)] == ["summoned", "checked_in", "checkin_late", "escalated"]


async def test_the_tick_flags_a_missing_unit_late_and_escalates_it_exactly_once(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await new_case(store, clock)
    summoned_at = clock.now()
    await summon(store, clock, settings, number, ["公安分局"], urgency="红")
    clock.advance(minutes=30)
    assert await worker.tick() == 0  # due, not yet late
    clock.advance(seconds=1)
    assert await worker.tick() == 1
    assert await worker.tick() == 0  # never twice
    s = (await summons_of(store, number))["公安分局"]
    assert (s["status"], s["late"], s["escalated_at"]) == ("waiting", True, clock.now())
    assert await escalated_at(store, number) == clock.now()
    due_text = (summoned_at + 30 * MINUTE).astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    assert (await ledger(store, number))[1:] == [
        ("checkin_late", "system", f"公安分局：{due_text}"),
        ("escalated", "system", f"checkin:公安分局:{due_text}"),
    ]
    assert (Texts()("ledger.checkin_late"), Texts()("ledger.escalated")) == ("报到超时", "提级督办")
    clock.advance(minutes=20)  # the unit comes at last: late, but not escalated again
    assert (await check_in(store, clock, settings, number, "公安分局")).late
    assert await worker.tick() == 0
    assert [a for a, _, _ in await ledger(store, number)] == ["summoned", "checkin_late", "escalated", "checked_in"]
    s = (await summons_of(store, number))["公安分局"]
    assert (s["status"], s["late"]) == ("checked_in", True)


async def test_a_late_check_in_before_any_tick_is_flagged_and_escalated_by_itself(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await new_case(store, clock)
    await summon(store, clock, settings, number, ["司法所"])
    clock.advance(minutes=45)
    assert (await check_in(store, clock, settings, number, "司法所")).late
    assert await worker.tick() == 0
    assert [(a, actor) for a, actor, _ in await ledger(store, number)] == [
        ("summoned", "街道王主任"),
        ("checked_in", "值班员"),
        ("checkin_late", "system"),
        ("escalated", "system"),
    ]
    assert "超时" in (await ledger(store, number))[1][2]
    assert await escalated_at(store, number) == clock.now()


async def test_a_summons_whose_case_stopped_being_handled_is_retired_not_flagged(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await new_case(store, clock)
    await summon(store, clock, settings, number, ["公安分局"])
    async with store.write() as tx:
        await tx.run("UPDATE cases SET status = 'withdrawn' WHERE number = :n", n=number)
    clock.advance(hours=1)
    assert await worker.tick() == 0
    assert (await summons_of(store, number))["公安分局"]["status"] == "retired"
    assert [a for a, _, _ in await ledger(store, number)] == ["summoned"]
    assert await escalated_at(store, number) is None


async def test_two_workers_ticking_at_once_escalate_every_late_unit_exactly_once(store, clock, settings, db_url):
    numbers = [await new_case(store, clock) for _ in range(12)]
    for number in numbers:
        await summon(store, clock, settings, number, ["公安分局", "司法所"])
    other_store = open_store(db_url)  # a second instance: its own connections
    try:
        small = replace(settings, deadlines=replace(settings.deadlines, batch_size=3))
        one, two = DeadlineWorker(store, clock, small), DeadlineWorker(other_store, clock, small)
        clock.advance(hours=1)
        flagged = sum(await asyncio.gather(one.tick(), two.tick(), one.tick(), two.tick()))
        flagged += await one.tick() + await two.tick()  # what a concurrent claim skipped (SKIP LOCKED)
        assert flagged == 12 * 2
    finally:
        await other_store.close()
    for number in numbers:
        actions = [a for a, _, _ in await ledger(store, number)]
        assert actions.count("checkin_late") == 2 and actions.count("escalated") == 2


async def test_a_restart_neither_loses_nor_doubles_an_escalation(store, clock, settings, db_url):
    number = await new_case(store, clock)
    await summon(store, clock, settings, number, ["公安分局"])
    clock.advance(minutes=31)
    async with store.write() as tx:  # a worker claims the row, then dies before firing it
        claimed = await dispatch.claim(tx, owner="crashed", now=clock.now(), lease=timedelta(seconds=60), limit=10)
    assert [c.unit for c in claimed] == ["公安分局"]
    restarted_store = open_store(db_url)
    try:
        restarted = DeadlineWorker(restarted_store, clock, settings)  # a new process on the same database
        assert await restarted.tick() == 0  # the lease still holds
        clock.advance(seconds=61)
        assert await restarted.tick() == 1
        async with store.write() as tx:  # the old worker wakes up: its claim is gone, nothing is written
            assert await dispatch.fire(tx, claimed[0], owner="crashed", now=clock.now(), settings=settings) is None
        assert await restarted.tick() == 0
    finally:
        await restarted_store.close()
    assert [a for a, _, _ in await ledger(store, number)] == ["summoned", "checkin_late", "escalated"]


def test_dispatch_settings_are_validated(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[dispatch]\ncheckin_minutes = 20\nurgency_minutes = ["红=10", "蓝=60"]\n', encoding="utf-8")
    d = load_settings(cfg, env={}).dispatch
    assert (d.minutes_for("红"), d.minutes_for("黄"), d.minutes_for("蓝")) == (10, 20, 60)
    env = {"FRONTDOOR_DISPATCH_URGENCY_MINUTES": "红=5"}
    assert load_settings(cfg, env=env).dispatch.minutes_for("红") == 5
    for bad, message in (
        ("checkin_minutes = 0", "dispatch.checkin_minutes"),
        ('urgency_minutes = ["紫=10"]', "dispatch.urgency_minutes"),
        ('urgency_minutes = ["红=0"]', "dispatch.urgency_minutes"),
        ('urgency_minutes = ["红=abc"]', "dispatch.urgency_minutes"),
        ('urgency_minutes = ["红=10", "红=20"]', "红 given twice"),
    ):
        cfg.write_text(f"[dispatch]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_settings(cfg, env={})


async def test_operators_summon_check_in_and_list_late_units_from_the_command_line(
    store, clock, settings, capsys, monkeypatch
):
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", settings.database.url)
    number, pending = await new_case(store, clock), await new_case(store, clock, "pending")
    summon_args = ["cases", "summon", number, "--unit", "公安分局", "--unit", "司法所", "--urgency", "红", "--by", "王"]
    assert await asyncio.to_thread(main, [*summon_args, "--reason", "业主堵门"]) == 0
    assert f"案件 {number} 已吹哨（红色），召集 公安分局、司法所" in capsys.readouterr().out
    assert (
        await asyncio.to_thread(main, ["cases", "summon", pending, "--unit", "A", "--urgency", "蓝", "--by", "王"]) == 1
    )
    assert "不能吹哨召集" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["cases", "checkin", number, "--unit", "公安分局", "--by", "值班员"]) == 0
    assert capsys.readouterr().out.strip() == f"公安分局 已报到案件 {number}。"
    assert await asyncio.to_thread(main, ["cases", "checkin", number, "--unit", "公安分局", "--by", "值班员"]) == 1
    assert "报到过" in capsys.readouterr().err
    # The CLI runs on the real clock: the check-in clock's tick runs an hour later on the test's.
    clock.advance(hours=2)
    async with store.read() as tx:
        summoned_at = max(s["summoned_at"] for s in await dispatch.listing(tx))
    clock.set(summoned_at + timedelta(hours=1))
    assert await DeadlineWorker(store, clock, settings).tick() == 1
    assert await asyncio.to_thread(main, ["dispatch", "list", "--late", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["number"], s["unit"], s["urgency"], s["state"]) for s in listed] == [(number, "司法所", "红", "late")]
    assert listed[0]["escalated_at"] is not None
    assert await asyncio.to_thread(main, ["dispatch", "list"]) == 0
    out = capsys.readouterr().out
    assert "公安分局  红" in out and "已报到" in out and "超时未报到" in out and "【提级督办" in out
    assert await asyncio.to_thread(main, ["cases", "show", number]) == 0
    out = capsys.readouterr().out
    assert "吹哨召集" in out and "部门报到" in out and "报到超时" in out and "提级督办" in out
