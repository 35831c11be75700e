"""Long-running cases (积案): on the supervisors' list by age or by reopens, with their leader (包案领导) and visits;
closing by the resident's signed commitment (息诉罢访), and a later complaint on the same matter flagged at intake."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import STORE
from bot.cli import main
from bot.longrun_cli import list_long_running
from bot.services import longrun
from bot.services.lifecycle import MoveRefused
from bot.texts import Texts
from storage.fast import js
from storage.models import CaseFile
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.test_complaint_dialog import file_complaint, to_summary
from tests.test_lifecycle import case_of, do, filed, pushed_after_delivery

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def h(db_url, clock, tmp_path):
    async with start_harness(db_url, clock, FRONTDOOR_MEDIA_STORE_DIR=str(tmp_path / "media")) as harness:
        yield harness


async def listed(h) -> dict[str, longrun.LongRunning]:
    async with h.app[STORE].read() as tx:
        return {c.number: c for c in await longrun.listing(tx, h.clock.now(), h.settings)}


async def handled_and_replied(h, number: str) -> None:
    await do(h, "accept", number)
    await do(h, "assign", number, unit="云城街道办事处")
    await do(h, "start", number)
    await do(h, "reply", number, text="已处理")


async def add_visit(h, number: str, status: str) -> None:
    async with h.app[STORE].write() as tx:
        now = tx.ts(h.clock.now())
        visit = await tx.val(
            "INSERT INTO visits (status, team, photo_media_ids, recorded_by, via, created_at, done_at) "
            "VALUES (:status, :team, :photos, '张科员', 'console', :now, :done) RETURNING id",
            status=status,
            team=js([]),
            photos=js([]),
            now=now,
            done=now if status == "done" else None,
        )
        await tx.run(
            "INSERT INTO visit_cases (visit_id, case_id, resolved) "
            "VALUES (:visit, (SELECT id FROM cases WHERE number = :number), :resolved)",
            visit=visit,
            number=number,
            resolved=False,
        )


async def test_a_case_reaches_the_list_by_age_under_the_clock(h, capsys):
    number = await filed(h, "o_old")
    await do(h, "accept", number)
    h.clock.advance(days=180)
    assert number not in await listed(h)  # exactly 180 days: not yet
    h.clock.advance(days=1)
    found = (await listed(h))[number]
    assert (found.age_days, found.reopen_count, found.leader, found.visits) == (181, 0, None, 0)
    assert found.latest is not None and found.latest.action == "accepted"
    younger = await filed(h, "o_young")
    assert younger not in await listed(h)
    async with h.app[STORE].read() as tx:
        assert longrun.is_long_running(
            {"status": "accepted", "created_at": h.clock.now().replace(year=2026, month=1), "reopen_count": 0},
            h.clock.now(),
            h.settings,
        )
        case_id = await tx.val("SELECT id FROM cases WHERE number = :n", n=number)
        assert (await longrun.facts(tx, case_id, h.clock.now(), h.settings)).long_running
    assert await list_long_running(h.settings, Texts(), as_json=True, clock=h.clock) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(c["number"], c["age_days"]) for c in out] == [(number, 181)]


async def test_a_case_reopened_twice_is_long_running_and_a_closed_one_is_not(h):
    number = await filed(h, "o_again")
    await handled_and_replied(h, number)
    await do(h, "reopen", number, reason="群众不满意", by="督办科")
    assert number not in await listed(h)
    await do(h, "start", number)
    await do(h, "reply", number, text="再次处理")
    await do(h, "reopen", number, reason="仍不满意", by="督办科")
    found = (await listed(h))[number]
    assert found.reopen_count == 2 and found.status == "reopened"
    assert (found.latest.action, found.latest.note) == ("reopened", "仍不满意")
    assert (await case_of(h, number)).reopen_count == 2
    await do(h, "start", number)
    await do(h, "reply", number, text="第三次处理")
    await do(h, "close", number)
    assert number not in await listed(h)  # closed: off the list


async def test_the_leader_is_set_and_shown_with_the_visits(h, capsys, monkeypatch):
    number = await filed(h, "o_lead")
    await do(h, "accept", number)
    h.clock.advance(days=200)
    await add_operator(h, "督办刘", "supervisor")
    await add_visit(h, number, "done")
    await add_visit(h, number, "done")
    await add_visit(h, number, "planned")  # not yet made: not counted
    async with Staff(h) as staff:
        await staff.login("督办刘")
        status, page = await staff.act(number, "leader", leader="王副区长")
        assert status == 200 and "王副区长" in page and "积案" in page
        status, listing = await staff.get("/long-running")
        assert status == 200 and number in listing and "王副区长" in listing and "200 天" in listing
        assert "2 次" in listing  # two visits done
        status, page = await staff.act(number, "leader", leader="")
        assert status == 400
    case = await case_of(h, number)
    assert case.leader == "王副区长"
    assert [(e.action, e.note, e.actor) for e in case.events][-1] == ("leader_assigned", "王副区长", "督办刘")
    found = (await listed(h))[number]
    assert (found.leader, found.visits, found.latest.action) == ("王副区长", 2, "leader_assigned")
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    assert await asyncio.to_thread(main, ["cases", "leader", number, "李书记", "--by", "督办科"]) == 0
    assert "李书记" in capsys.readouterr().out
    assert (await case_of(h, number)).leader == "李书记"
    assert await asyncio.to_thread(main, ["cases", "leader", "XF19990101-0001", "李书记", "--by", "督办科"]) == 1


async def upload(staff: Staff, number: str, data: bytes | None, **fields) -> tuple[int, str]:
    await staff.get(f"/cases/{number}")
    form = aiohttp.FormData(quote_fields=False)  # as a browser sends it: the filename in UTF-8, not %-quoted
    form.add_field("csrf", staff.csrf)
    for name, value in fields.items():
        form.add_field(name, value)
    if data is not None:
        form.add_field("file", data, filename="息诉罢访承诺书.pdf", content_type="application/pdf")
    async with staff.http.post(f"{staff.base}/cases/{number}/commit_close", data=form) as resp:
        return resp.status, await resp.text()


async def closed_by_commitment(h, openid: str) -> str:
    number = await filed(h, openid)
    await handled_and_replied(h, number)
    await do(h, "reopen", number, reason="群众不满意", by="督办科")
    await add_operator(h, "督办刘", "supervisor")
    async with Staff(h) as staff:
        await staff.login("督办刘")
        status, page = await upload(staff, number, None)
        assert status == 400 and "承诺书" in page
        status, page = await upload(staff, number, b"<html>not a pdf", note="x")
        assert status == 400 and "只能上传" in page
        assert (await case_of(h, number)).status == "reopened"
        status, page = await upload(staff, number, PDF, note="经多次走访，群众签字承诺")
        assert status == 200 and "息诉罢访" in page and "息诉罢访承诺书.pdf" in page
    return number


async def test_closing_by_commitment_needs_the_signed_file_and_tells_the_resident(h):
    number = await closed_by_commitment(h, "o_commit")
    case = await case_of(h, number)
    assert (case.status, case.close_reason) == ("closed", "息诉罢访")
    assert case.commitment_at == h.clock.now() and case.closed_at == h.clock.now()
    last = case.events[-1]
    assert (last.action, last.from_status, last.to_status, last.actor) == (
        "commit_closed",
        "reopened",
        "closed",
        "督办刘",
    )
    assert "息诉罢访承诺书.pdf" in last.note and "群众签字承诺" in last.note
    async with h.db.read() as s:
        files = list(await s.scalars(select(CaseFile).where(CaseFile.case_id == case.id)))
    assert [(f.kind, f.uploaded_by) for f in files] == [("commitment", "督办刘")]
    pushed = await pushed_after_delivery(h, "o_commit")
    assert "息诉罢访承诺书办结" in pushed[-1] and number in pushed[-1]
    # The move alone (the CLI's generic command) is refused without a commitment on file.
    other = await filed(h, "o_nofile")
    with pytest.raises(MoveRefused, match="待受理"):  # a matter the office never took up is not closed so
        await do(h, "commit_close", other)
    await do(h, "accept", other)
    with pytest.raises(MoveRefused, match="承诺书"):
        await do(h, "commit_close", other)
    async with h.app[STORE].write() as tx:
        with pytest.raises(MoveRefused, match="承诺书"):
            await longrun.commit_close(tx, other, None, by="x", clock=h.clock, settings=h.settings, texts=Texts())


async def test_a_later_complaint_on_the_same_matter_is_flagged_not_refused(h):
    earlier = await closed_by_commitment(h, "o_petition")
    h.clock.advance(days=3)
    r = h.resident("o_petition")
    reply = await file_complaint(r)  # the same category and place
    assert "案件编号" in reply
    later = reply.split("案件编号：")[1].split("。")[0]
    case = await case_of(h, later)
    assert case.status == "pending"
    assert [(e.action, e.note, e.actor) for e in case.events if e.action == "after_commitment"] == [
        ("after_commitment", earlier, "system")
    ]
    async with Staff(h) as staff:
        await staff.login("督办刘")
        status, page = await staff.get(f"/cases/{later}")
        assert status == 200 and "曾就同一事项签署息诉罢访承诺" in page and earlier in page
        status, inbox = await staff.get("/cases?view=all")
        assert status == 200 and "承诺后再访" in inbox
    # Another matter (another category, another place): not flagged.
    await to_summary(r, category="3", place="白云路公交站")
    other = (await r.say("提交")).split("案件编号：")[1].split("。")[0]
    assert not [e for e in (await case_of(h, other)).events if e.action == "after_commitment"]
    # Another resident on the same matter: not flagged either.
    third = await filed(h, "o_neighbour")
    assert not [e for e in (await case_of(h, third)).events if e.action == "after_commitment"]


async def test_who_sees_the_list(h):
    number = await filed(h, "o_roles")
    await do(h, "accept", number)
    await do(h, "assign", number, unit="交通局")
    h.clock.advance(days=365)
    await add_operator(h, "交通局小王", "unit", unit="交通局")
    await add_operator(h, "查看员", "viewer")
    async with Staff(h) as staff:
        await staff.login("交通局小王")
        status, _ = await staff.get("/long-running")
        assert status == 403
        status, page = await staff.get(f"/cases/{number}")
        assert status == 200 and "确定包案领导" not in page and "息诉罢访结案" not in page
        status, _ = await staff.act(number, "leader", leader="某领导")
        assert status == 403
        status, _ = await upload(staff, number, PDF)
        assert status == 403
    async with Staff(h) as staff:
        await staff.login("查看员")
        status, page = await staff.get("/long-running")
        assert status == 200 and number in page
        status, _ = await staff.act(number, "leader", leader="某领导")
        assert status == 403
    assert (await case_of(h, number)).leader is None


async def test_a_viewer_sees_no_phone_number_on_the_list(h):
    from bot.services.cases import add_ledger

    number = await filed(h, "o_list_phone")
    await do(h, "accept", number)
    h.clock.advance(days=365)
    case = await case_of(h, number)
    async with h.app[STORE].write() as tx:
        await add_ledger(tx, case.id, h.clock.now(), "张科员", "noted", note="居民留了电话13912345678")
    await add_operator(h, "查看员", "viewer")
    async with Staff(h) as staff:
        await staff.login("查看员")
        status, page = await staff.get("/long-running")
        assert status == 200 and number in page and "居民留了电话" in page
        assert "13912345678" not in page


async def test_a_commitment_is_not_rated_and_a_reopened_case_no_longer_holds_it(h):
    number = await closed_by_commitment(h, "o_signed")
    await pushed_after_delivery(h, "o_signed")
    resident = h.resident("o_signed")
    assert "评价" not in await resident.say("1")  # no one asked them to rate a commitment
    assert (await case_of(h, number)).rating is None
    await do(h, "reopen", number, reason="承诺人反映新情况", by="督办科")
    case = await case_of(h, number)
    assert case.commitment_at is None and case.close_reason is None
