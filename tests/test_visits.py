"""Visits (巡回接访、上门服务): recorded by a grid worker in chat (a location, a photo, resumed across a restart),
planned and completed in the console with the resident told, the dashboard's and the ledger's visit figures,
and who may do what."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from bot.app import STORE
from bot.services import visits
from bot.texts import Texts
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.polls_setup import bound_worker, build_city, join
from tests.test_lifecycle import do, filed


async def _ledger_actions(h, number: str) -> list[tuple[str, str | None]]:
    async with h.app[STORE].read() as tx:
        rows = await tx.all(
            "SELECT e.action, e.note FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.number = :n "
            "ORDER BY e.id",
            n=number,
        )
    return [(r["action"], r["note"]) for r in rows]


async def _all_visits(h) -> list[visits.Visit]:
    async with h.app[STORE].read() as tx:
        return await visits.listing(tx)


async def test_a_grid_worker_records_a_visit_in_chat_resumed_after_a_restart(db_url, clock):
    async with start_harness(db_url, clock) as h:
        city = await build_city(h)
        await join(h, "o_res", city.grid1)
        number = await filed(h, "o_res")
        worker = await bound_worker(h, "o_worker", "小王", city.grid1)
        assert "走访" in await worker.say("网格员帮助")
        reply = await worker.say("走访")
        assert "第 1 步" in reply
        assert "没有找到案件 XF20991231-0001" in await worker.say("XF20991231-0001")
        assert "第 2 步" in await worker.say(f"案件 {number}")
        # A photo before its step is kept all the same.
        assert "已收到第 1 张照片" in await worker.photo("MEDIA_VISIT_1")
        assert "第 3 步" in await worker.location(26.58, 106.71, "云城小区3栋")
        assert "第 4 步" in await worker.say("当事人张某及其家属")
    # frontdoor restarts in the middle of the dialog: the draft is in the database.
    async with start_harness(db_url, clock, fresh=False) as h:
        worker = h.resident("o_worker")
        assert "第 5 步" in await worker.say("物业同意停车费按每月120元执行")
        assert "已收到第 2 张照片" in await worker.photo("MEDIA_VISIT_2")
        reply = await worker.say("完成")
        assert "第 6 步" in reply and number in reply
        summary = await worker.say("是")
        assert "请核对" in summary and "2 张" in summary and "云城小区3栋" in summary
        done = await worker.say("提交")
        assert "已记录走访" in done
        (visit,) = await _all_visits(h)
        assert visit.status == "done" and visit.via == "chat" and visit.recorded_by == "小王"
        assert visit.place_label == "云城小区3栋" and visit.latitude == 26.58 and visit.longitude == 106.71
        assert visit.photo_media_ids == ["MEDIA_VISIT_1", "MEDIA_VISIT_2"]
        assert visit.met == "当事人张某及其家属" and "120元" in visit.agreed
        assert [(c.number, c.resolved) for c in visit.cases] == [(number, True)]
        actions = await _ledger_actions(h, number)
        assert actions[-1][0] == "visited" and "当场化解" in actions[-1][1]
        # The photos are fetched into the case's files, as a resident's are (WeChat keeps media 3 days).
        async with h.app[STORE].read() as tx:
            queued = await tx.all(
                "SELECT m.media_id FROM case_media m JOIN cases c ON c.id = m.case_id WHERE c.number = :n "
                "ORDER BY m.id",
                n=number,
            )
        assert [r["media_id"] for r in queued] == ["MEDIA_VISIT_1", "MEDIA_VISIT_2"]


async def test_a_grid_visit_in_chat_defaults_to_the_workers_grid(harness):
    h = harness
    city = await build_city(h)
    worker = await bound_worker(h, "o_worker", "小王", city.grid2)
    await worker.say("走访")
    assert "第 2 步" in await worker.say("我的网格")
    await worker.say("云城社区活动室")
    await worker.say("楼栋长和十几位居民")
    await worker.say("下周组织停车费听证会")
    reply = await worker.say("跳过")
    assert "没有关联案件" in reply
    assert "请核对" in await worker.say("否")
    assert "已记录走访" in await worker.say("提交")
    (visit,) = await _all_visits(h)
    assert visit.grid_id == city.grid2.id and visit.cases == [] and visit.photo_media_ids == []


def _csrf_post(staff: Staff, path: str, pairs: list[tuple[str, str]]):
    return staff.http.post(staff.base + path, data=[("csrf", staff.csrf), *pairs])


async def _post(staff: Staff, path: str, pairs: list[tuple[str, str]]) -> tuple[int, str]:
    async with _csrf_post(staff, path, pairs) as resp:
        return resp.status, await resp.text()


async def test_a_planned_visit_tells_the_resident_and_is_completed_in_the_console(harness):
    h = harness
    city = await build_city(h)
    await join(h, "o_res", city.grid1)
    number = await filed(h, "o_res")
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.get("/visits/new")
        assert status == 200 and "检察院" in page
        when = (h.clock.now() + timedelta(days=2)).astimezone(h.settings.tz).strftime("%Y-%m-%dT09:30")
        status, page = await _post(
            staff,
            "/visits/new",
            [
                ("planned_for", when),
                ("team", "检察院"),
                ("team", "法院"),
                ("team_other", "街道办事处，司法所"),
                ("cases", number),
                ("place", "云城小区"),
            ],
        )
        assert status == 200, page
        (visit,) = await _all_visits(h)
        assert visit.status == "planned" and visit.team == ["检察院", "法院", "街道办事处", "司法所"]
        # The resident is told, in Chinese, through the outbox.
        h.clock.advance(seconds=5)
        await h.deliver_outbox()
        pushed = [p for p in await h.pushed("o_res") if p and "上门走访" in p]
        assert len(pushed) == 1 and number in pushed[0] and "检察院、法院" in pushed[0] and "09:30" in pushed[0]
        assert "visit_planned" in [a for a, _ in await _ledger_actions(h, number)]

        status, page = await staff.get(f"/visits/{visit.id}")
        assert status == 200 and number in page
        status, page = await _post(
            staff,
            f"/visits/{visit.id}/complete",
            [("place", ""), ("met", "张某本人"), ("agreed", "同意调解"), ("resolved", number)],
        )
        assert status == 200 and "已记录" in page, page
        status, page = await _post(staff, f"/visits/{visit.id}/cancel", [("reason", "下雨")])
        assert status == 409
        (visit,) = await _all_visits(h)
        assert visit.status == "done" and visit.place_label == "云城小区" and visit.cases[0].resolved
        # The case page shows its visit.
        status, page = await staff.get(f"/cases/{number}")
        assert f'href="/console/visits/{visit.id}"' in page
        # A second plan, cancelled: the resident hears of that too.
        status, _ = await _post(staff, "/visits/new", [("planned_for", when), ("cases", number)])
        assert status == 200
        second = max(v.id for v in await _all_visits(h))
        assert (await _post(staff, f"/visits/{second}/cancel", [("reason", "")]))[0] == 400
        status, _ = await _post(staff, f"/visits/{second}/cancel", [("reason", "当事人外出")])
        assert status == 200
    h.clock.advance(seconds=5)
    await h.deliver_outbox()
    assert any(p and "已取消" in p and "当事人外出" in p for p in await h.pushed("o_res"))


async def test_recording_a_visit_in_the_console_and_the_figures(harness):
    h = harness
    city = await build_city(h)
    await join(h, "o_a", city.grid1)
    await join(h, "o_b", city.other)
    a, b = await filed(h, "o_a"), await filed(h, "o_b")
    for number, unit in ((a, "街道办事处"), (b, "自然资源局")):
        await do(h, "accept", number)
        await do(h, "assign", number, unit=unit)
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "李主任", "supervisor")
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.get("/visits/new")
        status, page = await _post(
            staff,
            "/visits/record",
            [
                ("cases", f"{a} {b}"),
                ("place", "中华路街道办事处"),
                ("met", "两户当事人"),
                ("agreed", "划定边界，签订协议"),
                ("resolved", a),
                ("team", "信访局"),
            ],
        )
        assert status == 200 and "已记录" in page, page
        await staff.get("/visits/new")
        status, page = await _post(
            staff,
            "/visits/record",
            [("grid", str(city.grid1.id)), ("place", "云城社区"), ("met", "居民代表"), ("agreed", "再议")],
        )
        assert status == 200
        status, page = await staff.get("/visits")
        assert status == 200 and "中华路街道办事处" in page and "云城社区" in page
    async with h.app[STORE].read() as tx:
        end = h.clock.now() + timedelta(days=1)
        fig = await visits.figures(tx, h.clock.now() - timedelta(days=1), end)
        scoped = await visits.figures(tx, h.clock.now() - timedelta(days=1), end, unit="街道办事处")
    assert (fig.done, fig.resolved) == (2, 1)
    units = {c.key: (c.visits, c.resolved) for c in fig.by_unit}
    assert units == {"街道办事处": (1, 1), "自然资源局": (1, 0), None: (1, 0)}
    grids = {c.key: (c.visits, c.resolved) for c in fig.by_grid}
    assert grids == {city.grid1.id: (2, 1), city.other.id: (1, 0)}
    assert {c.key: (c.visits, c.resolved) for c in fig.by_street} == {city.street.id: (2, 1)}
    assert (scoped.done, scoped.resolved) == (1, 1)

    async with Staff(h) as boss:
        await boss.login("李主任")
        status, page = await boss.get("/dashboard")
        assert status == 200
        assert re.search(r'id="visits-done">\s*2\s*<', page) and re.search(r'id="visits-resolved">\s*1\s*<', page)
        assert "街道办事处" in page and "云岩区/中华路街道/云城社区/第一网格" in page
        async with boss.http.get(boss.base + "/export.csv") as resp:
            body = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    head = rows[0]
    assert head[-2:] == ["走访次数", "走访化解"]
    by_number = {r[0]: r for r in rows[1:]}
    assert by_number[a][-2:] == ["1", "1"] and by_number[b][-2:] == ["1", "0"]


async def test_who_may_see_plan_and_record_visits(harness):
    h = harness
    city = await build_city(h)
    await join(h, "o_a", city.grid1)
    await join(h, "o_b", city.grid1)
    a, b = await filed(h, "o_a"), await filed(h, "o_b")
    for number, unit in ((a, "街道办事处"), (b, "自然资源局")):
        await do(h, "accept", number)
        await do(h, "assign", number, unit=unit)
    await add_operator(h, "王查看", "viewer")
    await add_operator(h, "赵承办", "unit", unit="街道办事处")
    async with h.app[STORE].write() as tx:
        other = await visits.record(
            tx,
            cases=[b],
            grid_id=None,
            place=visits.Place("某村"),
            met="村民",
            agreed="再议",
            photos=[],
            resolved=False,
            team=[],
            by="张科员",
            via="console",
            now=h.clock.now(),
            texts=Texts(),
        )
    record = [("cases", a), ("place", "云城小区"), ("met", "张某"), ("agreed", "同意")]
    async with Staff(h) as viewer:
        await viewer.login("王查看")
        status, page = await viewer.get("/visits")
        assert status == 200 and "某村" in page
        assert (await viewer.get("/visits/new"))[0] == 403
        assert (await _post(viewer, "/visits/record", record))[0] == 403
        assert (await _post(viewer, "/visits/new", [("cases", a), ("planned_for", "2026-12-30T09:00")]))[0] == 403
    async with Staff(h) as unit:
        await unit.login("赵承办")
        status, page = await unit.get("/visits")
        assert status == 200 and "某村" not in page  # another unit's case's visit
        assert (await unit.get(f"/visits/{other}"))[0] == 403
        status, page = await unit.get("/visits/new")
        assert status == 200
        # They record visits on their unit's cases, not on another unit's, and plan none.
        assert (await _post(unit, "/visits/record", [*record[1:], ("cases", b)]))[0] == 403
        assert (await _post(unit, "/visits/new", [("cases", a), ("planned_for", "2026-12-30T09:00")]))[0] == 403
        status, page = await _post(unit, "/visits/record", record)
        assert status == 200 and "已记录" in page
    found = await _all_visits(h)
    assert len(found) == 2 and {v.recorded_by for v in found} == {"张科员", "赵承办"}


async def test_a_viewer_sees_no_phone_number_in_a_visits_place(harness):
    h = harness
    number = await filed(h, "o_place_phone")
    await do(h, "accept", number)
    await add_operator(h, "王查看", "viewer")
    async with h.app[STORE].write() as tx:
        visit_id = await visits.record(
            tx,
            cases=[number],
            grid_id=None,
            place=visits.Place("张师傅家（13912345678）"),
            met="张师傅",
            agreed="再议",
            photos=[],
            resolved=False,
            team=[],
            by="张科员",
            via="console",
            now=h.clock.now(),
            texts=Texts(),
        )
    async with Staff(h) as viewer:
        await viewer.login("王查看")
        for path in ("/visits", f"/visits/{visit_id}"):
            status, page = await viewer.get(path)
            assert status == 200 and "张师傅家" in page
            assert "13912345678" not in page, path
