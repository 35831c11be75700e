"""People's mediation (人民调解) as a case's handling route, through the console over HTTP: mediators, sessions, the
signed agreement uploaded, and the result — an agreement closes the case 调解结案 and the resident rates it; a
failed mediation returns the case to ordinary handling. Roles and files are checked on the server."""

import aiohttp
import pytest
from sqlalchemy import select

from storage.models import AuditEntry, Mediation, MediationSession
from tests.conftest import start_harness
from tests.console_client import Staff, add_operator
from tests.test_lifecycle import case_of, do, filed, pushed_after_delivery

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def h(db_url, clock, tmp_path):
    async with start_harness(db_url, clock, FRONTDOOR_MEDIA_STORE_DIR=str(tmp_path / "media")) as harness:
        yield harness


async def handled_case(h, openid: str) -> str:
    """A complaint filed through the webhook, accepted, assigned to UNIT and being handled."""
    number = await filed(h, openid)
    await do(h, "accept", number)
    await do(h, "assign", number, unit=UNIT)
    await do(h, "start", number, by=UNIT)
    await pushed_after_delivery(h, openid)  # accepted, assigned: delivered before what the test looks at
    return number


async def upload(staff: Staff, number: str, data: bytes, *, kind="agreement", name="调解协议书.pdf", ctype=None):
    await staff.get(f"/cases/{number}")
    form = aiohttp.FormData(quote_fields=False)  # as browsers send it: the UTF-8 name unescaped
    form.add_field("csrf", staff.csrf)
    form.add_field("kind", kind)
    form.add_field("file", data, filename=name, content_type=ctype or "application/pdf")
    async with staff.http.post(f"{staff.base}/cases/{number}/files", data=form) as resp:
        return resp.status, await resp.text()


async def mediations_of(h, number: str) -> list[Mediation]:
    case = await case_of(h, number)
    async with h.db.read() as s:
        return list(await s.scalars(select(Mediation).where(Mediation.case_id == case.id).order_by(Mediation.id)))


async def test_an_agreement_closes_the_case_and_the_resident_rates_it(h):
    await add_operator(h, "街道李主任", "unit", unit=UNIT)
    number = await handled_case(h, "o_mediated")
    async with Staff(h) as staff:
        await staff.login("街道李主任")
        status, page = await staff.get(f"/cases/{number}")
        assert status == 200 and "人民调解" in page and "本案未进行人民调解" in page
        mediators = "王芳 人民调解员\n张村长　村干部\n刘大爷"
        status, page = await staff.act(number, "mediation_start", mediators=mediators)
        assert status == 200 and "已完成：转入人民调解" in page
        await staff.act(number, "mediation_mediator", mediator="赵律师 法律顾问")
        await staff.act(number, "mediation_session", held_at="2026-11-20", outcome="双方到场，供销社同意修缮门窗")
        h.clock.advance(minutes=30)
        await staff.act(number, "mediation_session", held_at="2026-11-23", outcome="商定赔偿金额")
        # Without the signed agreement an agreement is not taken.
        status, page = await staff.act(number, "mediation_conclude", result="agreed", terms="供销社赔偿3000元")
        assert status == 409 and "请先上传双方签字的调解协议书" in page
        assert (await case_of(h, number)).status == "in_progress"
        status, page = await upload(staff, number, PDF)
        assert status == 200 and "调解协议书.pdf" in page and "已完成：上传材料" in page
        status, page = await staff.act(
            number, "mediation_conclude", result="agreed", terms="供销社修缮门窗和院墙，并赔偿3000元"
        )
        assert status == 200 and "已办结" in page
        link = page.split('href="/console/cases/' + number + "/files/")[1].split('"')[0]
        async with staff.http.get(f"{staff.base}/cases/{number}/files/{link}") as resp:
            assert resp.status == 200 and await resp.read() == PDF
            assert resp.headers["Content-Type"] == "application/pdf"
            assert resp.headers["Content-Disposition"].startswith("attachment;")
    case = await case_of(h, number)
    assert (case.status, case.close_reason) == ("closed", "调解结案") and case.closed_at is not None
    actions = [e.action for e in case.events]
    assert actions[-7:] == [
        "mediation_started",
        "mediator_added",
        "mediation_session",
        "mediation_session",
        "case_file_added",
        "mediation_agreed",
        "closed_mediated",
    ]
    assert case.events[-1].from_status == "in_progress" and case.events[-1].to_status == "closed"
    [m] = await mediations_of(h, number)
    assert m.status == "agreed" and m.terms.startswith("供销社修缮门窗")
    assert [p["name"] for p in m.mediators] == ["王芳", "张村长", "刘大爷", "赵律师"]
    assert m.mediators[1]["role"] == "村干部" and m.mediators[2]["role"] == "人民调解员"
    async with h.db.read() as s:
        assert len(list(await s.scalars(select(MediationSession)))) == 2
    notice = (await pushed_after_delivery(h, "o_mediated"))[-1]
    assert f"您的案件 {number} 经人民调解达成协议，已调解结案" in notice and "1 满意" in notice
    r = h.resident("o_mediated")
    assert "还有什么想对我们说的吗" in await r.say("1")
    assert f"感谢您的评价！案件 {number}" in await r.say("跳过")
    rated = await case_of(h, number)
    assert (rated.rating, rated.status, rated.events[-1].action) == (1, "closed", "rated")
    async with h.db.read() as s:
        audited = [(a.action, a.outcome) for a in await s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    for action in ("mediation_start", "mediation_session", "file_upload", "mediation_conclude", "file_download"):
        assert (action, "ok") in audited
    assert ("mediation_conclude", "failed") in audited


async def test_a_failed_mediation_returns_the_case_to_ordinary_handling(h):
    await add_operator(h, "张科员", "dispatcher")
    number = await handled_case(h, "o_failed")
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.act(number, "mediation_start", mediators="")
        assert status == 409 and "请填写至少一位调解员" in page
        await staff.act(number, "mediation_start", mediators="王芳 人民调解员")
        status, page = await staff.act(number, "mediation_start", mediators="王芳 人民调解员")
        assert status == 409 and "已在人民调解中" in page  # one open mediation per case
        status, page = await staff.act(number, "mediation_session", held_at="明天", outcome="x")
        assert status == 400 and "日期格式" in page
        await staff.act(number, "mediation_session", held_at="2026-11-20", outcome="对方不到场")
        status, page = await staff.act(number, "mediation_conclude", result="failed", terms="")
        assert status == 409 and "请填写调解未成的原因" in page
        status, page = await staff.act(number, "mediation_conclude", result="failed", terms="对方拒绝调解")
        assert status == 200 and "办理中" in page
        assert (await case_of(h, number)).status == "in_progress"
        # Ordinary handling goes on: reply and close, the resident told as for any case.
        await staff.act(number, "reply", text="已联系住建部门现场处理。")
        status, page = await staff.act(number, "close")
        assert status == 200
    case = await case_of(h, number)
    assert (case.status, case.close_reason) == ("closed", None)
    assert [e.action for e in case.events][-5:] == [
        "mediation_started",
        "mediation_session",
        "mediation_failed",
        "replied",
        "closed",
    ]
    assert case.events[-3].note == "对方拒绝调解"
    [m] = await mediations_of(h, number)
    assert (m.status, m.terms) == ("failed", "对方拒绝调解") and m.ended_at is not None
    pushed = await pushed_after_delivery(h, "o_failed")
    assert "已联系住建部门现场处理" in pushed[-2] and "已办结" in pushed[-1]
    # A partial result keeps the case in handling; a new mediation may start afterwards.
    second = await handled_case(h, "o_partial")
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.act(second, "mediation_start", mediators="王芳")
        await staff.act(second, "mediation_conclude", result="partial", terms="门窗已修，院墙待议")
        assert (await case_of(h, second)).status == "in_progress"
        status, _ = await staff.act(second, "mediation_start", mediators="王芳")
        assert status == 200
    assert [m.status for m in await mediations_of(h, second)] == ["partial", "open"]


async def test_a_mediation_starts_only_while_the_case_is_handled(h):
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_pending")
    async with Staff(h) as staff:
        await staff.login("张科员")
        status, page = await staff.act(number, "mediation_start", mediators="王芳")
        assert status == 409 and "现在是“待受理”" in page
    assert await mediations_of(h, number) == []


async def test_a_file_of_the_wrong_type_or_too_large_is_refused_with_the_reason(db_url, clock, tmp_path):
    env = {"FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path), "FRONTDOOR_FIELDWORK_MAX_FILE_BYTES": "2048"}
    async with start_harness(db_url, clock, **env) as h:
        await add_operator(h, "张科员", "dispatcher")
        number = await handled_case(h, "o_files")
        async with Staff(h) as staff:
            await staff.login("张科员")
            # An executable called a PDF: the bytes decide, not the name or the browser's label.
            status, page = await upload(staff, number, b"MZ\x90\x00" + b"\x00" * 100, name="协议.pdf")
            assert status == 400 and "只能上传 PDF、JPEG、PNG 文件" in page
            status, page = await upload(staff, number, PDF + b"0" * 3000)
            assert status == 400 and "文件太大：最大" in page
            status, page = await upload(staff, number, PDF + b"0" * 2_000_000)  # far beyond: stopped at the door
            assert status == 413 and "文件太大" in page
            status, page = await upload(staff, number, PDF, kind="secret")
            assert status == 400 and "文件类别不对" in page
        assert [e.action for e in (await case_of(h, number)).events if e.action == "case_file_added"] == []
        async with h.db.read() as s:
            failed = [a for a in await s.scalars(select(AuditEntry)) if a.outcome == "failed"]
        assert [a.action for a in failed].count("file_upload") == 3
        assert list(tmp_path.glob("case-files/*")) == []


async def test_a_unit_handler_is_refused_on_another_units_case_and_downloads_follow_the_case(h):
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "环保局小王", "unit", unit=OTHER_UNIT)
    await add_operator(h, "网格员小李", "gridworker")
    await add_operator(h, "查看员", "viewer")
    number = await handled_case(h, "o_units")
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.act(number, "mediation_start", mediators="王芳")
        status, _ = await upload(staff, number, PDF)
        assert status == 200
    async with h.db.read() as s:
        case = await case_of(h, number)
        file_id = (await s.execute(select(AuditEntry.detail).where(AuditEntry.action == "file_upload"))).scalar()
    file_id = file_id.split(";")[0].removeprefix("id=")
    async with Staff(h) as other:
        await other.login("环保局小王")
        await other.get("/cases")  # a page with the session's token
        status, _ = await other.post(f"/cases/{number}/mediation_conclude", {"result": "failed", "terms": "x"})
        assert status == 403
        status, _ = await upload(other, number, PDF)
        assert status == 403
        status, _ = await other.get(f"/cases/{number}/files/{file_id}")
        assert status == 403
    async with Staff(h) as grid:
        await grid.login("网格员小李")
        status, _ = await grid.get(f"/cases/{number}/files/{file_id}")
        assert status == 403
    async with Staff(h) as viewer:
        await viewer.login("查看员")
        status, page = await viewer.get(f"/cases/{number}")
        assert status == 200 and "转入人民调解</button>" not in page and 'name="kind"' not in page
        status, _ = await viewer.post(f"/cases/{number}/mediation_session", {"held_at": "2026-11-20", "outcome": "x"})
        assert status == 403
        async with viewer.http.get(f"{viewer.base}/cases/{number}/files/{file_id}") as resp:
            assert resp.status == 200 and await resp.read() == PDF  # a viewer reads every case
        status, _ = await viewer.get(f"/cases/{number}/files/99999")
        assert status == 404
    [m] = await mediations_of(h, number)
    assert m.status == "open" and case.status == "in_progress"
    async with h.db.read() as s:
        refused = [(a.operator, a.action) for a in await s.scalars(select(AuditEntry)) if a.outcome == "refused"]
    assert ("环保局小王", "view_case") in refused and ("网格员小李", "view_case") in refused
    assert ("查看员", "mediation_session") in refused


async def test_a_viewer_sees_no_phone_number_in_the_mediation_section(h):
    await add_operator(h, "街道李主任", "unit", unit=UNIT)
    await add_operator(h, "查看员", "viewer")
    number = await handled_case(h, "o_mediation_phone")
    async with Staff(h) as staff:
        await staff.login("街道李主任")
        await staff.act(number, "mediation_start", mediators="王芳 调解员13912345678")
        await staff.act(number, "mediation_session", held_at="2026-11-20", outcome="约定回电13912345678")
        await staff.act(number, "mediation_conclude", result="partial", terms="联系人电话13912345678")
        _, page = await staff.get(f"/cases/{number}")
        assert "13912345678" in page  # a unit handler may see it
    async with Staff(h) as viewer:
        await viewer.login("查看员")
        status, page = await viewer.get(f"/cases/{number}")
        assert status == 200 and "人民调解" in page
        assert "13912345678" not in page
