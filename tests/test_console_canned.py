"""Canned replies (常用答复): admins manage them; a handler picks one on a case and it comes filled in."""

from sqlalchemy import select

from storage.models import AuditEntry, CannedReply
from tests.console_client import Staff, add_operator
from tests.test_lifecycle import do, filed

BODY = "您好，您反映的{问题类别}问题（案件编号 {案件编号}）已由{承办单位}处理，感谢您的监督。"


async def replies(h) -> list[CannedReply]:
    async with h.db.read() as s:
        return list(await s.scalars(select(CannedReply).order_by(CannedReply.id)))


async def test_an_admin_adds_changes_and_deletes_canned_replies(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    async with Staff(h) as admin:
        await admin.login("管理员")
        await admin.get("/canned")
        status, page = await admin.post("/canned", {"title": "通用办结答复", "body": BODY})
        assert status == 200 and "已保存" in page and "通用办结答复" in page
        [saved] = await replies(h)
        assert (saved.body, saved.updated_by) == (BODY, "管理员")
        status, page = await admin.post(
            "/canned", {"id": str(saved.id), "title": "办结答复", "body": BODY + "如有疑问请回复。"}
        )
        assert status == 200
        [changed] = await replies(h)
        assert (changed.id, changed.title) == (saved.id, "办结答复") and changed.body.endswith("如有疑问请回复。")
        status, page = await admin.post(f"/canned/{saved.id}/delete")
        assert status == 200 and "已删除" in page
    assert await replies(h) == []
    actions = [a.action for a in await _audit(h) if a.outcome == "ok"]
    assert actions.count("canned_save") == 2 and "canned_delete" in actions


async def _audit(h) -> list[AuditEntry]:
    async with h.db.read() as s:
        return list(await s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_what_a_canned_reply_may_hold_is_checked(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    async with Staff(h) as admin:
        await admin.login("管理员")
        await admin.get("/canned")
        status, page = await admin.post("/canned", {"title": "坏的", "body": "案件 {编号} 已办结"})
        assert status == 400 and "不认识占位符 {编号}" in page and "{案件编号}" in page
        assert "案件 {编号} 已办结" in page  # what was typed is kept in the form
        status, page = await admin.post("/canned", {"title": "", "body": "内容"})
        assert status == 400 and "标题不能为空" in page
        await admin.post("/canned", {"title": "同名", "body": "内容一"})
        status, page = await admin.post("/canned", {"title": "同名", "body": "内容二"})
        assert status == 400 and "已经有标题为“同名”的常用答复了" in page
    assert [r.body for r in await replies(h)] == ["内容一"]


async def test_only_admins_manage_them_by_page_and_by_form(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        assert (await staff.get("/canned"))[0] == 403
        await staff.get("/cases")  # a page with the session's token
        status, _ = await staff.post("/canned", {"title": "偷偷加的", "body": "内容"})
        assert status == 403
    assert await replies(h) == []


async def test_a_handler_picks_one_and_it_comes_filled_in_for_the_case(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    await add_operator(h, "街道小刘", "unit", unit="云城街道办事处")
    async with Staff(h) as admin:
        await admin.login("管理员")
        await admin.get("/canned")
        await admin.post("/canned", {"title": "办结答复", "body": BODY})
    [reply] = await replies(h)
    number = await filed(h, "o_canned")
    for action, kw in (("accept", {}), ("assign", {"unit": "云城街道办事处"}), ("start", {})):
        await do(h, action, number, **kw)
    async with Staff(h) as handler:
        await handler.login("街道小刘")
        status, page = await handler.get(f"/cases/{number}?canned={reply.id}")
        filled = f"您好，您反映的物业与停车问题（案件编号 {number}）已由云城街道办事处处理，感谢您的监督。"
        assert status == 200 and filled in page
        status, page = await handler.post(f"/cases/{number}/reply", {"text": filled})
        assert status == 200 and "已完成：答复群众" in page
