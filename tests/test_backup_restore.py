"""A restore of a backup taken mid-traffic serves the same cases and dialogs.

Residents file complaints concurrently through the webhook while the backup is taken (PostgreSQL: `pg_dump -Fc`;
SQLite: `frontdoor db backup`), and go on filing after it. Restored as the README says (PostgreSQL: pg_restore
into an empty database; SQLite: server stopped, the file put in place), a second server then shows every case
in the backup to its resident and through the API and console (with the token and the operator made before the
backup), the case numbers run 1…N without a gap or a double, a new complaint gets the next number, and every
complaint that was half-finished at backup time can be taken up and submitted."""

import asyncio
import os
import shutil
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from bot.app import STORE
from bot.cli import main
from bot.clock import FakeClock
from storage import migrate
from storage.backup import pg_dump_args, pg_restore_args
from storage.db import sqlite_file
from storage.fast import unjs
from tests.api_client import Platform, add_token
from tests.conftest import _pg_required, pg_database, start_harness
from tests.console_client import Staff, add_operator

WORKERS = 6
PAUSED = ("o_paused_0", "o_paused_1", "o_paused_2")
PAUSED_PLACE = "云城街道和平里{k}栋"
TODAY = "20261125"  # the harness clock's day in the office's time zone


@dataclass
class Traffic:
    """Residents filing complaints one after another on WORKERS parallel lanes, until told to stop (a lane may
    stop in the middle of a complaint: a draft left half-finished)."""

    h: object
    filed: dict[str, str] = field(default_factory=dict)  # openid → case number, as the resident was told
    messages: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered), monotonic
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._lane(w)) for w in range(WORKERS)]

    async def _lane(self, w: int) -> None:
        n = 0
        while not self.stopping.is_set():
            openid, n = f"o_busy_{w}_{n}", n + 1
            r = self.h.resident(openid)
            story = f"{openid}：楼下的下水道堵了三天，污水漫到了人行道上"
            for text in ("投诉", str(1 + n % 6), f"云城街道第{w}-{n}号楼", story, "跳过", "提交"):
                if self.stopping.is_set():
                    return
                sent = time.monotonic()
                reply = await r.say(text)
                self.messages.append((sent, time.monotonic()))
                if reply and "案件编号：" in reply:
                    self.filed[openid] = reply.split("案件编号：")[1].split("。")[0]
                    self.progress.set()

    async def until_filed(self, count: int) -> None:
        async with asyncio.timeout(60):
            while len(self.filed) < count:
                self.progress.clear()
                await self.progress.wait()

    def in_flight(self, start: float, end: float) -> int:
        """Messages sent or answered while [start, end] ran, or waiting for their answer all along."""
        return sum(sent <= end and answered >= start for sent, answered in self.messages)

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)


async def cases_of(h) -> dict[str, dict]:
    async with h.app[STORE].read() as tx:
        found = await tx.all("SELECT number, openid, category, place_label, description, status FROM cases")
    return {r["number"]: dict(r) for r in found}


async def drafts_of(h) -> dict[str, dict]:
    async with h.app[STORE].read() as tx:
        return {r["openid"]: unjs(r["data"]) for r in await tx.all("SELECT openid, data FROM dialog_states")}


@dataclass
class Before:
    """What the source server held: at backup time (at least) and once the traffic had stopped."""

    at_backup: set[str]
    at_end: dict[str, dict]
    token: str


async def busy_backup(h, take_backup) -> Before:
    """Three residents half-way through a complaint, residents filing all along, the backup taken in the middle
    of it; then the traffic goes on, the three finish on the source, and everything stops."""
    token = await add_token(h, "市民热线平台", "dispatcher")
    await add_operator(h, "值班员", "dispatcher")
    paused = [h.resident(openid) for openid in PAUSED]
    for k, r in enumerate(paused):
        for text in ("投诉", str(k + 1), PAUSED_PLACE.format(k=k)):
            await r.say(text)
    traffic = Traffic(h)
    traffic.start()
    try:
        await traffic.until_filed(12)
        at_backup = set(await cases_of(h))  # committed before the backup began: all of them must be in it
        start = time.monotonic()
        await take_backup()
        assert traffic.in_flight(start, time.monotonic()) > 0  # mid-traffic indeed
        await traffic.until_filed(len(traffic.filed) + 10)
        for r in paused:  # on the source their complaints carry on and are filed
            for text in ("我家楼上每天夜里十二点后还在装修", "跳过", "提交"):
                await r.say(text)
    finally:
        await traffic.stop()
    at_end = await cases_of(h)
    assert set(traffic.filed.values()) <= set(at_end)  # every number a resident was told is a stored case
    return Before(at_backup, at_end, token)


async def finish(r) -> str:
    """Take up whatever complaint this resident left half-way: ask where they are, answer on; the number."""
    reply = await r.say("帮助")
    for _ in range(8):
        if "案件编号：" in reply:
            return reply.split("案件编号：")[1].split("。")[0]
        if "请核对您填写的信息" in reply:
            reply = await r.say("提交")
        elif "第 1 步" in reply:
            reply = await r.say("2")
        elif "第 2 步" in reply:
            reply = await r.say("云城街道某某小区9栋")
        elif "第 3 步" in reply:
            reply = await r.say("隔壁单元有人在楼道里堆放杂物，堵住了消防通道")
        elif "第 4 步" in reply:
            reply = await r.say("跳过")
        else:
            raise AssertionError(f"unexpected reply to {r.openid}: {reply}")
    raise AssertionError(f"{r.openid} could not finish")


async def check_restored(h, before: Before) -> None:
    restored = await cases_of(h)
    # The backup holds everything committed before it began, nothing that never was, and each case as it was.
    assert before.at_backup <= set(restored) <= set(before.at_end)
    assert set(before.at_end) - set(restored), "traffic after the backup should be missing from it"
    assert all(restored[n] == before.at_end[n] for n in restored)
    async with h.app[STORE].read() as tx:
        last = await tx.val("SELECT last FROM case_counters WHERE day = :day", day=TODAY)
        submitted = await tx.val("SELECT count(DISTINCT case_id) FROM case_events WHERE action = 'submitted'")
    # One snapshot: the counter and the cases agree — numbers 1…last, none missing, none twice, each ledgered.
    assert sorted(int(n.rsplit("-", 1)[1]) for n in restored) == list(range(1, last + 1))
    assert submitted == len(restored)

    # Every resident sees their cases, and each case's details.
    by_resident = defaultdict(list)
    for number, row in restored.items():
        by_resident[row["openid"]].append(number)
    for openid, numbers in by_resident.items():
        r = h.resident(openid)
        mine = await r.say("我的案件")
        assert all(number in mine for number in numbers), (openid, mine)
        for number in numbers:
            assert restored[number]["description"] in await r.say(f"查询 {number}")

    # Staff: the API token and the console operator made before the backup still work, and see every case.
    api = Platform(h, before.token)
    listed, after = [], None
    while True:
        status, body, _ = await api.get("/cases", view="all", limit="50", **({"after": after} if after else {}))
        assert status == 200
        listed += [c["number"] for c in body["cases"]]
        if not (after := body["next"]):
            break
    assert sorted(listed) == sorted(restored)
    for number, row in restored.items():
        status, body, _ = await api.get(f"/cases/{number}")
        assert status == 200 and body["case"]["description"] == row["description"]
    some = min(restored)
    async with Staff(h) as staff:
        assert (await staff.login("值班员"))[0] == 200
        status, page = await staff.get(f"/cases/{some}")
        assert status == 200 and some in page and restored[some]["place_label"] in page

    # Every complaint half-finished at backup time is taken up where it was and submitted, with new numbers.
    drafts = await drafts_of(h)
    assert set(PAUSED) <= set(drafts)
    for k, openid in enumerate(PAUSED):
        assert drafts[openid]["place"]["label"] == PAUSED_PLACE.format(k=k)
    new = []
    for openid in sorted(drafts):
        r = h.resident(openid)
        if openid in PAUSED:
            assert "第 4 步" in await r.say("我家楼上每天夜里十二点后还在装修")
            summary = await r.say("跳过")
            assert PAUSED_PLACE.format(k=PAUSED.index(openid)) in summary
            reply = await r.say("提交")
            new.append(reply.split("案件编号：")[1].split("。")[0])
        else:
            new.append(await finish(r))
    # A new complaint gets the next number, and the next: the counter goes on from the backup's.
    fresh = h.resident("o_after_restore")
    for text in ("投诉", "5", "云城街道新华路12号", "新华路12号门口的路灯坏了一个星期", "跳过"):
        await fresh.say(text)
    new.append((await fresh.say("提交")).split("案件编号：")[1].split("。")[0])
    assert new == sorted(new) and set(new).isdisjoint(restored)
    assert [int(n.rsplit("-", 1)[1]) for n in sorted(new)] == list(range(last + 1, last + 1 + len(new)))
    assert await drafts_of(h) == {}


# ---- PostgreSQL: pg_dump -Fc while residents file, pg_restore into a new database --------------------------------


@pytest.fixture
def pg_pair():
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        if _pg_required():
            pytest.fail("pg_dump and pg_restore are required (make install-test installs postgresql-client)")
        pytest.skip("pg_dump / pg_restore not installed (make install-test installs postgresql-client)")
    with pg_database("frontdoor_backup") as source, pg_database("frontdoor_restored") as restored:
        yield source, restored


async def run(args: list[str]) -> None:
    """A command beside the running server: the event loop keeps serving residents while it runs."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert proc.returncode == 0, (args[0], err.decode())


async def test_postgresql_dump_taken_mid_traffic_restores_the_same_cases_and_dialogs(pg_pair, tmp_path):
    source, restored = pg_pair
    await asyncio.to_thread(migrate.upgrade, source)
    dump = str(tmp_path / "frontdoor.dump")
    async with start_harness(source, FakeClock()) as h:
        before = await busy_backup(h, lambda: run(pg_dump_args(source, dump)))
    await run(pg_restore_args(restored, dump))
    assert await asyncio.to_thread(migrate.pending, restored) == []  # same code: nothing to upgrade
    async with start_harness(restored, FakeClock(), fresh=False) as h:
        await check_restored(h, before)


# ---- SQLite: `frontdoor db backup` while residents file; restore = stop, put the file in place, start -------------


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """`frontdoor …` run on a database in tmp_path (FRONTDOOR_DATABASE_URL), from a directory without config."""
    url = f"sqlite+aiosqlite:///{tmp_path}/frontdoor.db"
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    return url


async def frontdoor(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def put_in_place(backup, live) -> None:
    """The restore of the README, with the server stopped: the WAL beside the database belongs to the database
    being replaced (SQLite would replay it into the restored file), then the backup takes the database's place."""
    for leftover in (f"{live}-wal", f"{live}-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    shutil.copyfile(backup, live)


def leftovers() -> list[str]:
    return [p for p in os.listdir() if p.endswith((".partial", "-wal", "-journal")) and p.startswith(("copy", "."))]


async def test_sqlite_backup_taken_mid_traffic_restores_the_same_cases_and_dialogs(cli_env, tmp_path, capsys):
    url = cli_env
    await asyncio.to_thread(migrate.upgrade, url)
    copy = tmp_path / "backups" / "frontdoor-backup.db"

    async def take_backup():
        assert await frontdoor("db", "backup", str(copy)) == 0

    async with start_harness(url, FakeClock()) as h:
        before = await busy_backup(h, take_backup)
    assert f"已备份到 {copy}" in capsys.readouterr().out
    put_in_place(copy, sqlite_file(url))
    async with start_harness(url, FakeClock(), fresh=False) as h:
        await check_restored(h, before)


async def test_sqlite_backup_refuses_to_overwrite_unless_forced_and_is_one_self_contained_file(cli_env, capsys):
    url = cli_env
    await asyncio.to_thread(migrate.upgrade, url)
    async with start_harness(url, FakeClock()) as h:
        for text in ("投诉", "1", "云城街道幸福里3栋", "物业把停车费定为每月160元，业主都觉得太高了", "跳过", "提交"):
            await h.resident("o_one").say(text)
        assert await frontdoor("db", "backup") == 2
        assert "用法：frontdoor db backup" in capsys.readouterr().err
        assert await frontdoor("db", "backup", "copy.db") == 0
        capsys.readouterr()
        assert await frontdoor("db", "backup", "copy.db") == 2
        err = capsys.readouterr().err
        assert "copy.db 已存在" in err and "--force" in err
        assert await frontdoor("db", "backup", str(sqlite_file(url)), "--force") == 2
        assert "不能是数据库本身" in capsys.readouterr().err
        wal = f"{sqlite_file(url)}-wal"  # the live WAL holds commits not yet in the file: it is the database too
        assert await frontdoor("db", "backup", wal, "--force") == 2
        assert "不能是数据库本身" in capsys.readouterr().err
        await h.resident("o_two").say("投诉")  # the database moves on …
        assert await frontdoor("db", "backup", "copy.db", "--force") == 0  # … and the copy is taken again
    assert leftovers() == []  # no WAL beside the copy, no partial file left behind
    with sqlite3.connect("copy.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT number, openid FROM cases").fetchall() == [("XF20261125-0001", "o_one")]
        assert conn.execute("SELECT openid FROM dialog_states").fetchall() == [("o_two",)]


async def test_db_backup_on_postgresql_prints_the_pg_dump_command_instead(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", "postgresql+asyncpg://frontdoor:s3cret@db.internal:5433/frontdoor")
    monkeypatch.chdir(tmp_path)
    assert await frontdoor("db", "backup", "nightly.dump") == 2
    err = capsys.readouterr().err
    assert "pg_dump -Fc -f nightly.dump postgresql://frontdoor@db.internal:5433/frontdoor" in err
    assert "pg_restore --no-owner" in err and "frontdoor db upgrade" in err
    assert "s3cret" not in err  # the password stays in PGPASSWORD or ~/.pgpass
    assert os.listdir() == []


def test_the_printed_pg_dump_reaches_the_same_server_the_same_way():
    """A socket directory or TLS mode in the database URL is part of how the server is reached: the printed
    pg_dump keeps them (asyncpg's ssl as libpq's sslmode) and drops only the driver's own options."""
    from storage.backup import libpq_url

    url = "postgresql+asyncpg://frontdoor:s3cret@/frontdoor?host=/run/postgresql&ssl=require&prepared_statement_cache_size=0"
    libpq = libpq_url(url)
    assert libpq.startswith("postgresql://frontdoor@/frontdoor?")
    assert "host=%2Frun%2Fpostgresql" in libpq and "sslmode=require" in libpq
    assert "prepared_statement_cache_size" not in libpq and "s3cret" not in libpq
