"""The geography tree in the console (/console/grids): admins build it by form and by CSV, everyone else who may
read it only reads it, and each grid has a printable QR poster of the account's permanent code."""

import re

import aiohttp
from sqlalchemy import select

from bot.app import STORE
from bot.console import grids
from bot.services import areas
from storage.models import Area, AuditEntry
from tests.console_client import Staff, add_operator

CSV = "区,街道,社区,网格,编码\n云岩区,中华路街道,云城社区,第一网格,YC01\n云岩区,中华路街道,云城社区,第二网格,YC02\n"


async def tree(h) -> list[areas.Area]:
    async with h.app[STORE].read() as tx:
        return await areas.all_areas(tx)


async def by_path(h, path: str) -> areas.Area:
    found = next((a for a in await tree(h) if a.path == path), None)
    assert found is not None, path
    return found


async def upload(staff: Staff, content: bytes, filename: str = "grids.csv") -> tuple[int, str]:
    """The import form, as a browser sends it: multipart, the file and the CSRF token."""
    await staff.get("/grids")
    form = aiohttp.FormData()
    form.add_field("csrf", staff.csrf)
    form.add_field("file", content, filename=filename, content_type="text/csv")
    async with staff.http.post(staff.base + "/grids/import", data=form) as resp:
        return resp.status, await resp.text()


def row_of(page: str, code: str) -> str:
    found = re.search(rf'<tr class="level-\w+" data-code="{code}">(.*?)</tr>', page, re.S)
    assert found, f"no row for {code}"
    return found.group(1)


async def test_an_admin_builds_the_tree_by_hand_renames_and_removes(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    async with Staff(h) as admin:
        await admin.login("管理员")
        status, page = await admin.get("/grids")
        assert status == 200 and "还没有区域" in page
        status, page = await admin.post("/grids/add", {"level": "district", "name": "云岩区", "parent": "", "code": ""})
        assert status == 200 and "已添加" in page
        district = await by_path(h, "云岩区")
        await admin.post("/grids/add", {"level": "street", "name": "中华路街道", "parent": str(district.id)})
        street = await by_path(h, "云岩区/中华路街道")
        await admin.post("/grids/add", {"level": "community", "name": "云城社区", "parent": str(street.id)})
        community = await by_path(h, "云岩区/中华路街道/云城社区")
        status, page = await admin.post(
            "/grids/add", {"level": "grid", "name": "第一网格", "parent": str(community.id), "code": "YC01"}
        )
        assert status == 200
        row = row_of(page, "YC01")
        assert 'class="depth-3">第一网格' in row and "<td>网格</td>" in row and "/console/grids/YC01/qr" in row
        assert "<td>社区</td>" in row_of(page, community.code)

        # The services' refusals, in words.
        status, page = await admin.post("/grids/add", {"level": "grid", "name": "错位网格", "parent": str(street.id)})
        assert status == 400 and "网格的上级须为：社区。" in page and "错位网格" in page  # the form keeps it
        again = {"level": "grid", "name": "第一网格", "parent": str(community.id)}
        status, page = await admin.post("/grids/add", again)
        assert status == 400 and "同一上级下已经有“第一网格”了。" in page
        status, page = await admin.post(f"/grids/{street.id}/remove")
        assert status == 409 and "“中华路街道”下面还有区域，不能删除" in page

        grid = await by_path(h, "云岩区/中华路街道/云城社区/第一网格")
        status, page = await admin.post(f"/grids/{grid.id}/rename", {"name": "一网格"})
        assert status == 200 and "已改名" in page and "一网格" in row_of(page, "YC01")
        status, page = await admin.post(f"/grids/{grid.id}/remove")
        assert status == 200 and "已删除" in page and 'data-code="YC01"' not in page
    assert [a.path for a in await tree(h)] == ["云岩区", "云岩区/中华路街道", "云岩区/中华路街道/云城社区"]
    async with h.db.read() as s:
        audited = [(a.action, a.outcome) for a in await s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert audited.count(("grid_add", "ok")) == 4 and ("grid_add", "failed") in audited
    assert {("grid_remove", "failed"), ("grid_rename", "ok"), ("grid_remove", "ok")} <= set(audited)


async def test_a_csv_import_reports_what_it_created_and_refuses_a_bad_file_whole(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    async with Staff(h) as admin:
        await admin.login("管理员")
        status, page = await upload(admin, ("\ufeff" + CSV).encode())
        assert status == 200 and "导入完成：共 2 行，新建 5 个区域，0 个网格原已存在。" in page
        assert 'data-code="YC01"' in page and 'data-code="YC02"' in page
        # Again, with one more grid, saved by a Chinese Excel (GBK): what exists is reused.
        more = CSV + "云岩区,中华路街道,白云社区,第一网格\n"
        status, page = await upload(admin, more.encode("gb18030"))
        assert status == 200 and "导入完成：共 3 行，新建 2 个区域，2 个网格原已存在。" in page
        before = len(await tree(h))
        bad = "云岩区,中华路街道,新社区,新网格\n云岩区,中华路街道,缺一列\n"
        status, page = await upload(admin, bad.encode())
        assert status == 400 and "第 2 行不完整" in page and "整个文件未导入" in page
        status, page = await upload(admin, "云岩区,中华路街道,新社区,新网格,坏 编码\n".encode())
        assert status == 400 and "第 1 行有误：网格编码无效" in page
        assert len(await tree(h)) == before  # all or nothing
    assert (await by_path(h, "云岩区/中华路街道/白云社区/第一网格")).code.startswith("G")


async def test_only_admins_change_the_tree_the_others_read_it(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "网格员小王", "gridworker")
    await add_operator(h, "街道小刘", "unit", unit="云城街道办事处")
    async with Staff(h) as admin:
        await admin.login("管理员")
        await upload(admin, CSV.encode())
    grid = await by_path(h, "云岩区/中华路街道/云城社区/第一网格")
    for name in ("张科员", "网格员小王"):
        async with Staff(h) as staff:
            await staff.login(name)
            status, page = await staff.get("/grids")
            assert status == 200 and 'data-code="YC01"' in page
            assert "/console/grids/add" not in page and "/grids/import" not in page  # no forms shown …
            # … and none taken, whatever is sent.
            status, _ = await staff.post("/grids/add", {"level": "district", "name": "白云区", "parent": ""})
            assert status == 403
            assert (await staff.post(f"/grids/{grid.id}/rename", {"name": "改掉"}))[0] == 403
            assert (await staff.post(f"/grids/{grid.id}/remove"))[0] == 403
            assert (await upload(staff, "白云区,甲街道,乙社区,丙网格\n".encode()))[0] == 403
    async with Staff(h) as unit:
        await unit.login("街道小刘")
        assert (await unit.get("/grids"))[0] == 403
    assert len(await tree(h)) == 5 and (await by_path(h, grid.path)).name == "第一网格"
    async with h.db.read() as s:
        refused = [a.action for a in await s.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused"))]
    assert refused.count("grid_add") == 2 and refused.count("grid_import") == 2 and "grids" in refused


async def test_the_tree_counts_the_residents_of_its_grids(harness):
    h = harness
    await add_operator(h, "只读", "viewer")
    async with h.app[STORE].write() as tx:
        await areas.import_csv(tx, CSV, now=h.clock.now())
    one = await by_path(h, "云岩区/中华路街道/云城社区/第一网格")
    two = await by_path(h, "云岩区/中华路街道/云城社区/第二网格")
    async with h.app[STORE].write() as tx:
        for openid, grid in (("o_a", one), ("o_b", one), ("o_c", two)):
            await areas.join(tx, openid, grid, h.clock.now())
    async with Staff(h) as viewer:
        await viewer.login("只读")
        status, page = await viewer.get("/grids")
    assert status == 200
    counts = {code: re.search(r'<td class="num">(\d+)</td>', row_of(page, code)).group(1) for code in ("YC01", "YC02")}
    assert counts == {"YC01": "2", "YC02": "1"}
    assert '<td class="num">3</td>' in row_of(page, (await by_path(h, "云岩区")).code)


async def test_a_grids_poster_carries_the_accounts_permanent_qr_code_for_it(harness):
    h = harness
    await add_operator(h, "网格员小王", "gridworker")
    async with h.app[STORE].write() as tx:
        await areas.import_csv(tx, CSV, now=h.clock.now())
    async with Staff(h) as staff:
        await staff.login("网格员小王")
        status, page = await staff.get("/grids/YC01/qr")
        assert status == 200 and "扫码加入第一网格" in page and "云岩区/中华路街道/云城社区/第一网格" in page
        assert re.search(r'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \d+ \d+" class="qr">', page)
        assert "style=" not in page.split('class="qr"')[1].split("</svg>")[0]  # nothing the CSP would block
        # The code is WeChat's answer to qrcode/create for the grid's scene: the URL it drew is the one it shows.
        assert list(h.fake.qrcodes.values()) == ["grid:YC01"]
        [url] = re.findall(r"二维码内容：(http://weixin\.qq\.com/q/\S+?)<", page)
        assert str(grids.qr_svg(url, "扫码加入第一网格")) in page
        community = (await by_path(h, "云岩区/中华路街道/云城社区")).code
        assert (await staff.get(f"/grids/{community}/qr"))[0] == 404  # only a grid has a poster
        assert (await staff.get("/grids/NOPE/qr"))[0] == 404
    async with h.db.read() as s:
        assert await s.scalar(select(Area.code).where(Area.code == "YC01")) == "YC01"
        audit = await s.scalar(select(AuditEntry).where(AuditEntry.action == "grid_qr"))
    assert (audit.operator, audit.target) == ("网格员小王", "YC01")


async def test_a_poster_wechat_would_not_make_says_why(harness):
    h = harness
    await add_operator(h, "管理员", "admin")
    async with h.app[STORE].write() as tx:
        await areas.import_csv(tx, CSV, now=h.clock.now())
    h.fake.add_fault("qrcode/create", errcode=45157)
    async with Staff(h) as admin:
        await admin.login("管理员")
        status, page = await admin.get("/grids/YC01/qr")
    assert status == 502 and "未能从微信获取二维码" in page and "45157" in page and 'class="qr"' not in page
    async with h.db.read() as s:
        audit = await s.scalar(select(AuditEntry).where(AuditEntry.action == "grid_qr"))
    assert (audit.outcome, audit.target) == ("failed", "YC01")
