"""Deadlines: clocks per case, durable reminders fired once by a scheduler tick, the working-day calendar.

Time is a FakeClock moved by the tests; every test runs on SQLite and on PostgreSQL."""

import asyncio
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.cli import main
from bot.services import calendar, cases, lifecycle
from bot.services.deadlines import DeadlineWorker, claim, fire
from bot.services.lifecycle import MoveRefused, Request
from bot.texts import Texts
from storage.fast import open_store

DAY = timedelta(days=1)


def complaint(openid: str = "o_clock") -> cases.NewComplaint:
    return cases.NewComplaint(openid, "物业与停车", "云城街道某小区", None, None, "停车费太贵了", [], [], None)


async def submit(store, clock, settings, openid: str = "o_clock") -> str:
    async with store.write() as tx:
        return await cases.submit_complaint(
            tx,
            complaint(openid),
            now=clock.now(),
            tz=settings.tz,
            prefix="XF",
            acceptance_days=settings.complaint.acceptance_days,
        )


async def do(store, clock, settings, action: str, number: str, **kw) -> lifecycle.Moved:
    async with store.write() as tx:
        return await lifecycle.move(
            tx,
            Request(action=action, number=number, by=kw.pop("by", "张科员"), **kw),
            clock=clock,
            settings=settings,
            texts=Texts(),
        )


async def case_row(store, number: str):
    async with store.read() as tx:
        row = await tx.one("SELECT * FROM cases WHERE number = :n", n=number)
        events = await tx.all(
            "SELECT action, actor, from_status, to_status, note FROM case_events WHERE case_id = :id ORDER BY id",
            id=row["id"],
        )
        return dict(row) | {
            "accept_due_at": tx.dt(row["accept_due_at"]),
            "handle_due_at": tx.dt(row["handle_due_at"]),
            "escalated_at": tx.dt(row["escalated_at"]),
        }, [dict(e) for e in events]


async def actions(store, number: str) -> list[str]:
    return [e["action"] for e in (await case_row(store, number))[1]]


async def reminders(store, number: str) -> list[tuple[str, str, str]]:
    async with store.read() as tx:
        rows = await tx.all(
            "SELECT r.clock, r.kind, r.status FROM deadline_reminders r JOIN cases c ON c.id = r.case_id "
            "WHERE c.number = :n ORDER BY r.id",
            n=number,
        )
    return [(r["clock"], r["kind"], r["status"]) for r in rows]


async def test_the_acceptance_clock_warns_flags_and_escalates_once(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await submit(store, clock, settings)
    assert await worker.tick() == 0  # arms the acceptance clock of the new case
    assert await reminders(store, number) == [
        ("accept", "warning", "pending"),
        ("accept", "overdue", "pending"),
        ("accept", "escalation", "pending"),
    ]
    clock.advance(days=11)  # 73% of 15 days
    assert await worker.tick() == 0
    clock.advance(days=1)  # 80%
    assert await worker.tick() == 1
    assert await worker.tick() == 0  # never twice
    case, events = await case_row(store, number)
    assert case["deadline_state"] == "due_soon" and events[-1]["action"] == "deadline_warning"
    assert events[-1]["actor"] == "system"
    clock.advance(days=3, minutes=1)  # past 15 days
    assert await worker.tick() == 1
    assert (await case_row(store, number))[0]["deadline_state"] == "overdue"
    clock.advance(days=settings.deadlines.escalate_after_days)
    assert await worker.tick() == 1
    case, events = await case_row(store, number)
    assert case["escalated_at"] == clock.now() and events[-1]["action"] == "escalated"
    assert Texts()("ledger.escalated") == "提级督办"
    assert await actions(store, number) == ["submitted", "deadline_warning", "deadline_overdue", "escalated"]
    assert {r[2] for r in await reminders(store, number)} == {"done"}


async def test_acceptance_stops_one_clock_and_starts_the_next(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await submit(store, clock, settings)
    await worker.tick()
    clock.advance(days=2)
    await do(store, clock, settings, "accept", number)
    case, _ = await case_row(store, number)
    assert case["handle_due_at"] == clock.now() + timedelta(days=60)
    assert [r[:2] for r in await reminders(store, number)][3:] == [
        ("handle", "warning"),
        ("handle", "overdue"),
        ("handle", "escalation"),
    ]
    clock.advance(days=20)  # the acceptance clock's rows come due: the clock stopped, so they are retired
    assert await worker.tick() == 0
    assert [r[2] for r in await reminders(store, number)][:3] == ["obsolete"] * 3
    assert await actions(store, number) == ["submitted", "accepted"]
    clock.advance(days=26)  # 46 days after acceptance: 76% of 60
    assert await worker.tick() == 1
    assert (await case_row(store, number))[0]["deadline_state"] == "due_soon"


async def test_a_closed_or_withdrawn_case_is_never_reminded(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    first, second = await submit(store, clock, settings, "o_a"), await submit(store, clock, settings, "o_b")
    await do(store, clock, settings, "accept", first)
    await do(store, clock, settings, "assign", first, unit="城管局")
    await do(store, clock, settings, "start", first)
    await do(store, clock, settings, "reply", first, text="已处理")
    await do(store, clock, settings, "close", first)
    await do(store, clock, settings, "withdraw", second)
    clock.advance(days=200)
    assert await worker.tick() == 0
    assert await actions(store, second) == ["submitted", "withdrawn"]
    assert "deadline_overdue" not in await actions(store, first)


async def test_one_extension_with_a_reason_moves_the_handling_clock_and_tells_the_resident(store, clock, settings):
    worker = DeadlineWorker(store, clock, settings)
    number = await submit(store, clock, settings, "o_ext")
    with pytest.raises(MoveRefused, match="现在是“待受理”，不能延期"):
        await do(store, clock, settings, "extend", number, reason="需要现场勘查")
    await do(store, clock, settings, "accept", number)
    accepted_due = (await case_row(store, number))[0]["handle_due_at"]
    await do(store, clock, settings, "assign", number, unit="国土局")
    clock.advance(days=50)
    assert await worker.tick() == 1  # warning at 45 days
    with pytest.raises(MoveRefused, match="延期需要填写原因"):
        await do(store, clock, settings, "extend", number)
    with pytest.raises(MoveRefused, match="1 到 30 日"):
        await do(store, clock, settings, "extend", number, reason="地界无法测量", days=31)
    moved = await do(store, clock, settings, "extend", number, reason="地界无法测量，需请测绘单位", days=20)
    assert (moved.from_status, moved.to_status) == ("assigned", "assigned")
    case, events = await case_row(store, number)
    assert case["handle_due_at"] == accepted_due + timedelta(days=20)
    assert (case["status"], case["deadline_state"], case["extension_days"]) == ("assigned", "ok", 20)
    assert (events[-1]["action"], events[-1]["from_status"], events[-1]["to_status"]) == (
        "extended",
        "assigned",
        "assigned",
    )
    assert "地界无法测量" in events[-1]["note"]
    with pytest.raises(MoveRefused, match="已经延期过一次"):
        await do(store, clock, settings, "extend", number, reason="再延", days=5)
    async with store.read() as tx:
        notices = [json.loads(r["payload"])["content"] for r in await tx.all("SELECT payload FROM outbox")]
    assert any(f"案件 {number} 办理期限延长 20 日" in n and "地界无法测量" in n for n in notices)
    # The old deadline's overdue row is retired; the new clock's rows fire on the new dates.
    clock.set(accepted_due + timedelta(minutes=1))
    assert await worker.tick() == 1  # only the new warning (75% of 80 days = day 60)
    assert "deadline_overdue" not in await actions(store, number)
    clock.set(accepted_due + timedelta(days=20, minutes=1))
    assert await worker.tick() == 1
    assert (await case_row(store, number))[0]["deadline_state"] == "overdue"
    assert (await actions(store, number)).count("deadline_warning") == 2


async def test_two_workers_ticking_at_once_fire_every_reminder_exactly_once(store, clock, settings, db_url):
    numbers = [await submit(store, clock, settings, f"o_{i}") for i in range(30)]
    other_store = open_store(db_url)  # a second instance: its own connections
    try:
        small = replace(settings, deadlines=replace(settings.deadlines, batch_size=4))
        one, two = DeadlineWorker(store, clock, small), DeadlineWorker(other_store, clock, small)
        await asyncio.gather(one.tick(), two.tick())
        clock.advance(days=30)
        fired = sum(await asyncio.gather(one.tick(), two.tick(), one.tick(), two.tick()))
        # A claim may skip rows another worker is claiming at that instant (SKIP LOCKED) and end its tick
        # early; the next tick takes them. What must hold is that nothing fires twice and nothing is lost.
        fired += await one.tick() + await two.tick()
        assert fired == 30 * 3
    finally:
        await other_store.close()
    for number in numbers:
        assert await actions(store, number) == ["submitted", "deadline_warning", "deadline_overdue", "escalated"]


async def test_a_restart_neither_loses_nor_doubles_a_reminder(store, clock, settings, db_url):
    number = await submit(store, clock, settings)
    crashed = DeadlineWorker(store, clock, settings, owner="crashed")
    await crashed.tick()
    clock.advance(days=12)
    async with store.write() as tx:  # the worker claims its rows, then dies before firing them
        claimed = await claim(tx, owner="crashed", now=clock.now(), lease=timedelta(seconds=60), limit=10)
    assert [c.kind for c in claimed] == ["warning"]
    restarted_store = open_store(db_url)
    try:
        restarted = DeadlineWorker(restarted_store, clock, settings)  # a new process on the same database
        assert await restarted.tick() == 0  # the lease still holds
        clock.advance(seconds=61)
        assert await restarted.tick() == 1
        async with store.write() as tx:  # the old worker wakes up: its claim is gone, nothing is written
            assert await fire(tx, claimed[0], owner="crashed", now=clock.now(), settings=settings) is None
        assert await restarted.tick() == 0
    finally:
        await restarted_store.close()
    assert (await actions(store, number)).count("deadline_warning") == 1


async def test_reminders_are_created_once_however_often_a_clock_is_armed(store, clock, settings):
    number = await submit(store, clock, settings)
    workers = [DeadlineWorker(store, clock, settings) for _ in range(3)]
    for w in workers:
        await w.tick()
    assert len(await reminders(store, number)) == 3


def test_working_days_skip_weekends_and_holidays_and_count_make_up_days():
    # 2026: National Day 10-01…10-07 off, Sunday 09-27 and Saturday 10-10 worked (调休).
    overrides = {date(2026, 10, d): "holiday" for d in range(1, 8)}
    overrides |= {date(2026, 9, 27): "workday", date(2026, 10, 10): "workday"}
    assert calendar.add_working_days(date(2026, 9, 25), 1, overrides) == date(2026, 9, 27)  # Fri → make-up Sun
    assert calendar.add_working_days(date(2026, 9, 29), 2, overrides) == date(2026, 10, 8)  # Tue → 30th, 8th
    assert calendar.add_working_days(date(2026, 10, 8), 2, overrides) == date(2026, 10, 10)  # Thu → Fri, make-up Sat
    assert calendar.add_working_days(date(2026, 11, 27), 1, {}) == date(2026, 11, 30)  # Fri → Mon


async def test_working_day_clocks_go_through_the_office_calendar(store, clock, settings):
    settings = replace(settings, deadlines=replace(settings.deadlines, day_kind="working"))
    async with store.write() as tx:
        await calendar.store_days(tx, calendar.parse_csv("date,kind\n2026-12-01,holiday\n2026-12-05,workday\n"))
    clock.set(datetime(2026, 11, 27, 2, 0, tzinfo=UTC))  # Friday, 10:00 in Shanghai
    number = await submit(store, clock, settings)
    await DeadlineWorker(store, clock, settings).tick()
    case, _ = await case_row(store, number)
    # 15 working days: Mon 11-30, (12-01 off), 12-02 … with Saturday 12-05 worked → Friday 12-18.
    assert case["accept_due_at"] == datetime(2026, 12, 18, 2, 0, tzinfo=UTC)
    await do(store, clock, settings, "accept", number)
    case, _ = await case_row(store, number)
    assert case["handle_due_at"].astimezone(settings.tz).weekday() < 5


async def test_supervisors_list_deadlines_and_the_office_keeps_its_calendar(
    store, clock, settings, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", settings.database.url)
    late, fine = await submit(store, clock, settings, "o_late"), None
    clock.advance(days=16)
    fine = await submit(store, clock, settings, "o_fine")
    await DeadlineWorker(store, clock, settings).tick()
    assert await asyncio.to_thread(main, ["deadlines", "list", "--overdue", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["number"], c["clock"], c["deadline_state"]) for c in listed] == [(late, "accept", "overdue")]
    assert await asyncio.to_thread(main, ["deadlines", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{late}  待受理  受理期限" in out and "超期" in out and fine in out
    csv_file = tmp_path / "holidays.csv"
    csv_file.write_text("date,kind\n2027-01-01,holiday\n2027-02-07,workday\n", encoding="utf-8")
    assert await asyncio.to_thread(main, ["calendar", "import", str(csv_file)]) == 0
    assert "已导入 2 天" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["calendar", "list", "--year", "2027"]) == 0
    assert capsys.readouterr().out.splitlines() == ["2027-01-01  周五  节假日", "2027-02-07  周日  调休上班"]
    csv_file.write_text("2027-01-02,vacation\n", encoding="utf-8")
    assert await asyncio.to_thread(main, ["calendar", "import", str(csv_file)]) == 1
    assert "第 1 行有误" in capsys.readouterr().err
