"""`frontdoor grids …` and `frontdoor gridworker …`: the geography tree, the posters' QR codes against the fake
WeChat of a running frontdoor, and grid workers' invite codes."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import pytest
import segno

from bot.app import qrcode_image_base
from bot.cli import main
from bot.config import load_settings
from bot.services import areas, gridworkers
from storage.fast import open_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TREE_CSV = """区,街道,社区,网格,网格编码
云岩区,中华路街道,云城社区,第一网格,YC01
云岩区,中华路街道,云城社区,第二网格
云岩区, 中华路街道 ,云城社区(二),第一网格
南明区,花果园街道,花果园社区,第一网格,HG01
"""


@pytest.fixture
def cli(db, db_url, monkeypatch, capsys):
    """Runs `frontdoor ARGS…` on the test's (emptied) database: (exit code, stdout, stderr)."""
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", db_url)

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
async def fast(db, db_url):
    store = open_store(db_url, pool_size=1)
    yield store
    await store.close()


async def tree(fast) -> dict[str, areas.Area]:
    async with fast.read() as tx:
        return {a.path: a for a in await areas.all_areas(tx)}


def write(tmp_path, text: str, name: str = "tree.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return str(path)


# ---- the tree --------------------------------------------------------------------------------------------------


async def test_import_builds_the_tree_and_a_reimport_changes_nothing(cli, fast, tmp_path):
    code, out, _ = await cli("grids", "import", write(tmp_path, TREE_CSV))
    assert code == 0 and "已导入 4 行" in out and "新建 11 个区域" in out
    first = await tree(fast)
    assert len(first) == 11
    grid = first["云岩区/中华路街道/云城社区/第一网格"]
    assert (grid.level, grid.code) == ("grid", "YC01")
    assert first["云岩区/中华路街道/云城社区(二)/第一网格"].code.startswith("G")  # a code made when none is given
    assert first["云岩区/中华路街道"].level == "street"  # the cell's spaces did not make a second street

    code, out, _ = await cli("grids", "import", write(tmp_path, TREE_CSV))
    assert code == 0 and "新建 0 个区域，4 个网格原已存在" in out
    assert await tree(fast) == first

    code, out, _ = await cli("grids", "list")
    lines = out.splitlines()
    assert lines[0].startswith("云岩区  [") and "居民 0 人" in lines[0]  # in the file's order
    assert lines[-4].startswith("南明区  [") and lines[-1].startswith("      第一网格  [HG01]")
    community = lines.index(next(line for line in lines if line.strip().startswith("云城社区  [")))
    # Its grids sit right under it, indented one step deeper, before the community named 云城社区(二).
    assert lines[community + 1] == "      第一网格  [YC01]  网格  居民 0 人"
    assert lines[community + 2].startswith("      第二网格  [G")
    assert lines[community + 3].startswith("    云城社区(二)  [")


async def test_a_gbk_file_from_excel_is_read_too(cli, fast, tmp_path):
    code, _, _ = await cli("grids", "import", write(tmp_path, TREE_CSV, encoding="gb18030"))
    assert code == 0 and "云岩区/中华路街道/云城社区/第一网格" in await tree(fast)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("云岩区,中华路街道,云城社区", "第 3 行格式不对"),
        ("云岩区,中华路街道,,第三网格", "第 3 行格式不对"),
        ("云岩区,中华路街道,云城社区,第三网格,bad code!", "第 3 行无法导入：网格编码只能用字母"),
        ("云岩区,中华路街道,云城社区,第三网格,YC01", "第 3 行无法导入：网格编码已被其他区域使用"),
        ("云岩区,中华路街道,云城社区,第三网格" + "长" * 80, "第 3 行无法导入：名称为空、过长或含有“/”"),
        ("云岩区,中华路街道,云城社区,第三/第四网格", "第 3 行无法导入：名称为空、过长或含有“/”"),
    ],
)
async def test_a_bad_line_refuses_the_whole_file_naming_its_line(cli, fast, tmp_path, line, says):
    text = f"云岩区,中华路街道,云城社区,第一网格,YC01\n云岩区,中华路街道,云城社区,第二网格\n{line}\n南明区,a,b,c\n"
    code, out, err = await cli("grids", "import", write(tmp_path, text))
    assert code == 1 and out == ""
    assert says in err and "整个文件都未导入" in err
    assert await tree(fast) == {}  # nothing written, not even the good lines before it


async def test_an_unreadable_file_is_said_so(cli, tmp_path):
    code, _, err = await cli("grids", "import", str(tmp_path / "missing.csv"))
    assert code == 1 and "无法读取文件" in err
    (tmp_path / "photo.csv").write_bytes(b"\xff\xd8\xff\xe0 not text")
    code, _, err = await cli("grids", "import", str(tmp_path / "photo.csv"))
    assert code == 1 and "无法读取文件" in err


async def test_add_puts_each_level_under_the_level_above_it(cli, fast):
    assert (await cli("grids", "add", "区", "云岩区"))[0] == 0
    code, out, _ = await cli("grids", "add", "street", "中华路街道", "--parent", "云岩区")
    assert code == 0 and "已添加街道：云岩区/中华路街道" in out
    code, out, _ = await cli("grids", "add", "社区", "云城社区", "--parent", "云岩区/中华路街道")
    assert code == 0
    full_width = "云岩区／中华路街道／云城社区"
    code, out, _ = await cli("grids", "add", "网格", "第一网格", "--parent", full_width, "--code", "YC01")
    assert code == 0 and "（编码 YC01）" in out

    code, _, err = await cli("grids", "add", "grid", "第二网格", "--parent", "云岩区/中华路街道")
    assert code == 1 and "网格须建在社区之下" in err
    code, _, err = await cli("grids", "add", "community", "别的社区", "--parent", "云岩区")
    assert code == 1 and "社区须建在街道之下" in err
    code, _, err = await cli("grids", "add", "street", "无主街道")
    assert code == 1 and "街道须建在区之下" in err
    code, _, err = await cli("grids", "add", "district", "南明区", "--parent", "云岩区")
    assert code == 1 and "区是最上一级" in err
    code, _, err = await cli("grids", "add", "grid", "第二网格", "--parent", "没有这个社区")
    assert code == 1 and "找不到上级区域“没有这个社区”" in err
    community = (await tree(fast))["云岩区/中华路街道/云城社区"].code
    code, _, err = await cli("grids", "add", "grid", "第一网格", "--parent", community)
    assert code == 1 and "已有名为“第一网格”" in err
    code, _, err = await cli("grids", "add", "grid", "第二网格", "--parent", community, "--code", "YC01")
    assert code == 1 and "编码 YC01 已被其他区域使用" in err
    code, _, err = await cli("grids", "add", "grid", "第二网格", "--parent", community, "--code", "网格2")
    assert code == 1 and "编码“网格2”不可用" in err
    with pytest.raises(SystemExit):
        await cli("grids", "add", "县", "某县")
    assert sorted(await tree(fast)) == [
        "云岩区",
        "云岩区/中华路街道",
        "云岩区/中华路街道/云城社区",
        "云岩区/中华路街道/云城社区/第一网格",
    ]


async def test_the_list_counts_the_residents_of_each_area(cli, fast, tmp_path):
    await cli("grids", "import", write(tmp_path, TREE_CSV))
    now = datetime.now(UTC)
    async with fast.write() as tx:
        found = {a.code: a for a in await areas.all_areas(tx)}
        for openid, code in [("o_a", "YC01"), ("o_b", "YC01"), ("o_c", "HG01")]:
            await areas.join(tx, openid, found[code], now)
        await areas.join(tx, "o_gone", found["YC01"], now)
        await tx.run("UPDATE residents SET subscribed = :no WHERE openid = 'o_gone'", no=False)
    code, out, _ = await cli("grids", "list", "--json")
    listed = {a["path"]: a for a in json.loads(out)}
    assert listed["云岩区/中华路街道/云城社区/第一网格"]["residents"] == 2  # who unfollowed is not counted
    assert listed["云岩区/中华路街道/云城社区"]["residents"] == 2
    assert listed["云岩区"]["residents"] == 2 and listed["南明区"]["residents"] == 1
    assert listed["云岩区/中华路街道"] == {
        "code": listed["云岩区/中华路街道"]["code"],
        "level": "street",
        "name": "中华路街道",
        "path": "云岩区/中华路街道",
        "parent": listed["云岩区"]["code"],
        "residents": 2,
    }
    code, out, _ = await cli("grids", "list")
    assert "第一网格  [YC01]  网格  居民 2 人" in out and "南明区  [" in out and "居民 1 人" in out


async def test_an_empty_tree_says_how_to_start(cli):
    code, out, _ = await cli("grids", "list")
    assert code == 0 and "frontdoor grids import" in out


# ---- QR codes --------------------------------------------------------------------------------------------------


async def test_a_grids_qr_code_is_made_by_the_running_fake_and_saved(harness, monkeypatch, capsys, tmp_path):
    h = harness
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    monkeypatch.setenv("FRONTDOOR_SERVER_PORT", str(h.settings.server.port))
    monkeypatch.chdir(tmp_path)
    run = lambda *argv: asyncio.to_thread(main, list(argv))  # noqa: E731
    assert await run("grids", "import", write(tmp_path, TREE_CSV)) == 0
    capsys.readouterr()

    assert await run("grids", "qrcode", "云岩区/中华路街道/云城社区/第一网格") == 0
    out, err = capsys.readouterr()
    saved = tmp_path / "qr-YC01.png"
    image = saved.read_bytes()
    assert image.startswith(PNG_SIGNATURE) and image[12:16] == b"IHDR"
    width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
    assert width == height >= 200  # square, and large enough to print
    assert str(saved) in out and err == ""
    url = out.split("：")[-1].strip()
    assert url.startswith("http://weixin.qq.com/q/")
    # What a poster printer would encode from the URL is exactly the image.
    expected = tmp_path / "expected.png"
    segno.make(url, error="m").save(str(expected), kind="png", scale=8, border=4)
    assert image == expected.read_bytes()
    # A permanent string scene naming the grid, which the follow / SCAN event brings back.
    assert list(h.fake.qrcodes.values()) == ["grid:YC01"]
    assert h.fake.calls["showqrcode"] == 1

    assert await run("grids", "qrcode", "HG01", "--out", str(tmp_path)) == 1  # a folder, not a file
    assert "无法写入文件" in capsys.readouterr().err
    assert await run("grids", "qrcode", "HG01", "--out", str(tmp_path / "posters" / "hg.png")) == 0
    assert (tmp_path / "posters" / "hg.png").read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(h.fake.qrcodes.values()) == ["grid:HG01", "grid:HG01", "grid:YC01"]

    assert await run("grids", "qrcode", "云岩区/中华路街道/云城社区") == 1
    assert "是社区，不是网格" in capsys.readouterr().err
    assert await run("grids", "qrcode", "NOPE") == 1
    assert "找不到区域“NOPE”" in capsys.readouterr().err

    h.fake.add_fault("showqrcode", http_status=404)
    assert await run("grids", "qrcode", "YC01") == 1
    assert "生成二维码失败" in capsys.readouterr().err


def test_qr_images_come_from_the_fake_in_fake_mode_and_from_the_setting_otherwise():
    fake = load_settings(os.devnull, env={"FRONTDOOR_SERVER_PORT": "8123"})
    assert qrcode_image_base(fake) == "http://127.0.0.1:8123/fake-wechat/cgi-bin/showqrcode"
    assert qrcode_image_base(fake, "http://elsewhere/fw/") == "http://elsewhere/fw/cgi-bin/showqrcode"
    real = load_settings(
        os.devnull,
        env={
            "FRONTDOOR_WECHAT_FAKE_API": "false",
            "FRONTDOOR_WECHAT_APP_ID": "wx1234567890abcdef",
            "FRONTDOOR_WECHAT_APP_SECRET": "0123456789abcdef0123456789abcdef",
            "FRONTDOOR_WECHAT_TOKEN": "cityT0ken",
            "FRONTDOOR_WECHAT_ENCODING_AES_KEY": "Q" * 43,
        },
    )
    assert qrcode_image_base(real) == "https://mp.weixin.qq.com/cgi-bin/showqrcode"


# ---- grid workers ----------------------------------------------------------------------------------------------


async def test_an_invite_code_binds_once(cli, fast, tmp_path):
    await cli("grids", "import", write(tmp_path, TREE_CSV))
    code, out, err = await cli("gridworker", "invite", "王敏", "--grid", "YC01")
    assert code == 0 and len(out.splitlines()) == 1  # the code alone on standard output
    invite = out.strip()
    assert gridworkers.looks_like_code(invite)
    assert err.strip() == f"请网格员在公众号发送：绑定 {invite}（72 小时内有效）"

    now = datetime.now(UTC)
    async with fast.write() as tx:
        worker = await gridworkers.bind(tx, invite, "o_worker_wangmin_0001", now=now)
        assert worker.name == "王敏" and worker.openid == "o_worker_wangmin_0001"
        assert await gridworkers.grids_of(tx, worker) == [(await areas.find(tx, "YC01")).id]
    with pytest.raises(gridworkers.WorkerError) as refused:
        async with fast.write() as tx:
            await gridworkers.bind(tx, invite, "o_someone_else", now=now)
    assert refused.value.key == "used"

    # Invited again for another grid: the same worker, one more area, a fresh code.
    code, out, _ = await cli("gridworker", "invite", "王敏", "--grid", "云岩区/中华路街道/云城社区(二)/第一网格")
    assert code == 0 and out.strip() != invite
    async with fast.read() as tx:
        assert len((await gridworkers.by_name(tx, "王敏")).area_ids) == 2
        assert len(await gridworkers.listing(tx)) == 1

    code, out, err = await cli("gridworker", "invite", "王敏", "--grid", "云岩区")
    assert code == 1 and out == "" and "网格员只能负责网格或社区" in err
    code, out, err = await cli("gridworker", "invite", "李华", "--grid", "NOPE")
    assert code == 1 and out == "" and "找不到区域" in err
    async with fast.read() as tx:
        assert await gridworkers.by_name(tx, "李华") is None  # refused: nothing written


async def test_workers_are_added_assigned_and_listed_with_openids_masked(cli, fast, tmp_path):
    await cli("grids", "import", write(tmp_path, TREE_CSV))
    code, out, _ = await cli("gridworker", "add", "李华", "--area", "云岩区/中华路街道/云城社区", "--area", "HG01")
    assert code == 0 and "李华" in out and "云岩区/中华路街道/云城社区" in out
    code, _, err = await cli("gridworker", "add", "李华", "--area", "HG01")
    assert code == 1 and "已存在" in err
    code, _, err = await cli("gridworker", "add", "张三", "--area", "HG01", "--operator", "nobody")
    assert code == 1 and "没有名为 nobody 的控制台账号" in err
    code, out, _ = await cli("gridworker", "assign", "李华", "--area", "YC01")
    assert code == 0 and "云岩区/中华路街道/云城社区/第一网格" in out
    code, _, err = await cli("gridworker", "assign", "没这人", "--area", "YC01")
    assert code == 1 and "没有名为 没这人 的网格员" in err
    code, _, err = await cli("gridworker", "assign", "李华", "--area", "云岩区/中华路街道")
    assert code == 1 and "是街道" in err

    code, out, _ = await cli("gridworker", "invite", "王敏", "--grid", "YC01")
    async with fast.write() as tx:
        await gridworkers.bind(tx, out.strip(), "oWANGMIN_secret_openid", now=datetime.now(UTC))

    code, out, _ = await cli("gridworker", "list")
    assert code == 0 and "oWANGMIN_secret_openid" not in out
    lines = dict(line.split("  ", 1) for line in out.splitlines())
    assert lines["王敏"].startswith("已绑定微信（oWAN…）") and "云城社区/第一网格" in lines["王敏"]
    assert lines["李华"].startswith("未绑定微信") and "南明区/花果园街道/花果园社区/第一网格" in lines["李华"]

    code, out, _ = await cli("gridworker", "list", "--json")
    assert "oWANGMIN_secret_openid" not in out
    listed = {w["name"]: w for w in json.loads(out)}
    assert (listed["王敏"]["bound"], listed["王敏"]["openid"]) == (True, "oWAN…")
    assert (listed["李华"]["bound"], listed["李华"]["openid"]) == (False, None)
    assert listed["李华"]["areas"] == [
        "云岩区/中华路街道/云城社区",
        "云岩区/中华路街道/云城社区/第一网格",
        "南明区/花果园街道/花果园社区/第一网格",
    ]


async def test_a_worker_may_be_linked_to_their_console_account(cli, fast, tmp_path, monkeypatch):
    import io

    await cli("grids", "import", write(tmp_path, TREE_CSV))
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    assert (await cli("operator", "add", "wangmin", "--role", "gridworker", "--password-stdin"))[0] == 0
    code, _, _ = await cli("gridworker", "add", "王敏", "--area", "YC01", "--operator", "wangmin")
    assert code == 0
    code, _, err = await cli("gridworker", "add", "张三", "--area", "HG01", "--operator", "wangmin")
    assert code == 1 and "已关联网格员 王敏" in err
    async with fast.read() as tx:
        assert (await gridworkers.by_operator(tx, "wangmin")).name == "王敏"
    code, out, _ = await cli("gridworker", "list")
    assert "控制台账号 wangmin" in out


async def test_no_workers_yet_says_how_to_invite_one(cli):
    code, out, _ = await cli("gridworker", "list")
    assert code == 0 and "gridworker invite" in out
