"""Two real `frontdoor serve` processes on the machine's PostgreSQL, sharing one fake WeChat API (`frontdoor
fake-wechat`), as a city runs them behind nginx.

200 residents file complaints through the dialog, their messages alternating between the instances; every
third message is also delivered to the other instance at once, as WeChat's retry would be when the first
attempt is slow. One instance is killed (SIGKILL) mid-run: what was in flight there is sent again to the other,
as nginx would, and the instance is started again. Then: every dialog completed, one case per resident, the
live stream on instance A announced every case (those filed through B too), every accept-deadline warning fired
once across both instances, and every acceptance notice reached WeChat once.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.clock import Clock
from bot.config import load_settings
from bot.services import lifecycle, operators
from bot.services.lifecycle import Request
from bot.texts import Texts
from bot.wechat import simulator
from bot.wechat.simulator import WeChatServer
from storage.fast import open_store
from tests.conftest import free_port, pg_database
from tests.console_client import PASSWORD, Staff
from tests.test_complaint_dialog import STORY
from tests.test_console_live import Stream

ROOT = Path(__file__).resolve().parents[2]
RESIDENTS = 200
IN_FLIGHT = 40  # residents talking at once
STEPS = ("投诉", "1", "云城街道某某小区3栋", STORY, "跳过", "提交")
TOKEN = "clusterToken" + secrets.token_hex(4)
AES_KEY = base64.b64encode(secrets.token_bytes(32)).decode()[:43]


class Cluster:
    """The processes of the test, each with its log file; killed at the end whatever happened."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # the process writes it until it ends
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _ready(http: aiohttp.ClientSession, url: str, cluster: Cluster, name: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cluster.procs[name].poll() is not None:
            pytest.fail(f"{name} exited: {cluster.log(name)}")
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"{name} not ready: {cluster.log(name)}")


@pytest.fixture
def pg_cluster_url():
    with pg_database("frontdoor_cluster") as url:
        yield url


async def test_two_instances_one_database_nothing_lost_or_doubled(pg_cluster_url, tmp_path):
    fake_port, ports = free_port(), {"A": free_port(), "B": free_port()}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FRONTDOOR_")},
        "PYTHONPATH": str(ROOT),
        "FRONTDOOR_DATABASE_URL": pg_cluster_url,
        "FRONTDOOR_WECHAT_FAKE_API": "false",
        "FRONTDOOR_WECHAT_API_BASE_URL": f"http://127.0.0.1:{fake_port}/fake-wechat",
        "FRONTDOOR_WECHAT_TOKEN": TOKEN,
        "FRONTDOOR_WECHAT_ENCODING_AES_KEY": AES_KEY,
        "FRONTDOOR_WECHAT_APP_ID": "wxcluster00000001",
        "FRONTDOOR_WECHAT_APP_SECRET": "cluster-secret-" + secrets.token_hex(4),
        "FRONTDOOR_DEADLINES_TICK_SECONDS": "1",
        "FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media"),
        "FRONTDOOR_CONSOLE_SECURE_COOKIES": "never",
    }
    settings = load_settings(path=os.devnull, env=env)
    upgrade = [sys.executable, "-m", "bot", "db", "upgrade"]
    await asyncio.to_thread(subprocess.run, upgrade, cwd=tmp_path, env=env, check=True, timeout=120)
    store = open_store(pg_cluster_url)
    async with store.write() as tx:
        hashed = operators.hash_password(PASSWORD)
        await operators.add(tx, "值班员", "dispatcher", hashed, unit=None, now=datetime.now(UTC))

    cluster = Cluster(tmp_path, env)
    wechat = WeChatServer(TOKEN, settings.wechat.app_id, AES_KEY)
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    fake = f"http://127.0.0.1:{fake_port}/fake-wechat"
    try:
        cluster.start("fake", "fake-wechat", "--port", str(fake_port))
        for name, port in ports.items():
            cluster.start(name, "serve", "--port", str(port))
        async with aiohttp.ClientSession() as http:
            await _ready(http, f"{fake}/sent", cluster, "fake")
            for name in ports:
                await _ready(http, base[name] + "/readyz", cluster, name)
            async with Staff(SimpleNamespace(url=base["A"])) as staff:
                status, _ = await staff.login("值班员")
                assert status == 200
                live = await staff.http.get(staff.base + "/live")
                assert (await live.content.readline()).startswith(b": connected")
                await asyncio.sleep(1.5)  # the feed's first look sets where it starts
                announced: list[str] = []
                stream, listening = Stream(live), True

                async def listen() -> None:
                    while listening:
                        event = await stream.next(within=1.0)
                        if event is not None and event[0] == "case":
                            announced.append(event[1]["number"])

                listener = asyncio.create_task(listen())
                run = await _drive(http, wechat, base, fake, cluster, ports)
                await _until(lambda: len(announced) >= RESIDENTS, 30)
                await asyncio.sleep(3)  # long enough for an announcement made twice to show
                listening = False
                await listener
                live.close()

            # Every dialog completed, one case each, nothing left half-way.
            numbers = run.numbers
            assert sorted(numbers) == sorted(f"o_cluster_{n}" for n in range(RESIDENTS))
            async with store.read() as tx:
                cases = await tx.all("SELECT number, openid FROM cases")
                drafts = await tx.val("SELECT COUNT(*) FROM dialog_states")
            assert len(cases) == RESIDENTS and len({c["openid"] for c in cases}) == RESIDENTS
            assert {c["number"] for c in cases} == set(numbers.values())
            assert drafts == 0
            assert run.retries_agreed > RESIDENTS and run.failed_over > 0 and run.through_b

            # The live stream on A: every case once, those that came through B included.
            assert Counter(announced) == Counter(numbers.values())
            assert run.through_b <= set(announced)

            # Deadline warnings, made due now: fired once each, whichever instance claimed them.
            async with store.write() as tx:
                due = await tx.run(
                    "UPDATE deadline_reminders SET fire_at = :now WHERE clock = 'accept' AND kind = 'warning'",
                    now=datetime.now(UTC),
                )
            assert due == RESIDENTS

            async def warned() -> int:
                async with store.read() as tx:
                    return await tx.val(
                        "SELECT COUNT(*) FROM deadline_reminders WHERE clock = 'accept' AND kind = 'warning' "
                        "AND status = 'pending'"
                    )

            await _until_async(lambda: warned(), lambda left: left == 0, 30)
            async with store.read() as tx:
                rows = await tx.all(
                    "SELECT case_id, COUNT(*) AS n FROM case_events WHERE action = 'deadline_warning' GROUP BY case_id"
                )
            assert len(rows) == RESIDENTS and {r["n"] for r in rows} == {1}

            # Staff accept every case (as the console would): each acceptance notice reaches WeChat once.
            for number in numbers.values():
                async with store.write() as tx:
                    req = Request(action="accept", number=number, by="值班员")
                    await lifecycle.move(tx, req, clock=Clock(), settings=settings, texts=Texts())

            async def accepted_notices() -> Counter:
                async with http.get(f"{fake}/sent") as resp:
                    sent = await resp.json()
                return Counter(m["touser"] for m in sent if "已受理" in (m.get("content") or str(m)))

            notices = await _until_async(accepted_notices, lambda c: sum(c.values()) >= RESIDENTS, 60)
            await asyncio.sleep(3)  # time for a doubled send to show
            notices = await accepted_notices()
            assert notices == Counter({openid: 1 for openid in numbers})
    finally:
        await store.close()
        cluster.stop_all()


class _Run:
    def __init__(self):
        self.numbers: dict[str, str] = {}  # openid → case number
        self.through_b: set[str] = set()  # case numbers whose submission instance B answered
        self.retries_agreed = 0
        self.failed_over = 0
        self.sent = 0


async def _drive(http, wechat: WeChatServer, base: dict, fake: str, cluster: Cluster, ports: dict) -> _Run:
    run = _Run()
    down: set[str] = set()
    gate = asyncio.Semaphore(IN_FLIGHT)
    total = RESIDENTS * len(STEPS)

    async def post(name: str, signed) -> str | None:
        async with http.post(
            f"{base[name]}/wechat?{urlencode(signed.query)}",
            data=signed.body.encode(),
            headers={"Content-Type": "text/xml"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            return wechat.open_reply(signed, resp.status, await resp.text())

    async def deliver(name: str, signed) -> tuple[str, str | None]:
        """To `name`, or — when it is down or dies on the way — to the other, as nginx fails over."""
        other = "A" if name == "B" else "B"
        if name in down:
            name, other = other, name
        try:
            return name, await post(name, signed)
        except (aiohttp.ClientConnectionError, TimeoutError):
            run.failed_over += 1
            return other, await post(other, signed)

    async def pushed_number(openid: str) -> str | None:
        async with http.get(f"{fake}/sent", params={"touser": openid}) as resp:
            for item in await resp.json():
                if "案件编号：" in (item.get("content") or ""):
                    return item["content"]
        return None

    async def resident(n: int) -> None:
        openid = f"o_cluster_{n}"
        async with gate:
            for step, text in enumerate(STEPS):
                async with http.post(f"{fake}/inbound", json={"openid": openid, "kind": "message"}):
                    pass
                signed = wechat.sign(simulator.text_xml(openid, text))
                name = "AB"[(n + step) % 2]
                if (n + step) % 3 == 0:
                    other = "A" if name == "B" else "B"
                    (got, first), (_, second) = await asyncio.gather(deliver(name, signed), deliver(other, signed))
                    # The same answer from both — unless the one waiting behind the other ran out of its reply
                    # budget and answered `success` (None): its answer is then the other's, or comes pushed.
                    assert first == second or None in (first, second), (openid, text, first, second)
                    run.retries_agreed += first == second
                    first = first or second
                else:
                    got, first = await deliver(name, signed)
                run.sent += 1
                if text == "提交":
                    # A deferred answer is pushed; if the instance that leased it was killed, only after its lease.
                    answer = first or await _until_async(lambda: pushed_number(openid), bool, 90)
                    number = answer.split("案件编号：")[1].split("。")[0]
                    run.numbers[openid] = number
                    if got == "B":
                        run.through_b.add(number)

    async def chaos() -> None:
        await _until(lambda: run.sent >= total // 3, 120)
        cluster.kill("B")
        down.add("B")
        await asyncio.sleep(2)
        cluster.start("B", "serve", "--port", str(ports["B"]))
        await _ready(http, base["B"] + "/readyz", cluster, "B")
        down.discard("B")

    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(*(resident(n) for n in range(RESIDENTS)))
    await chaos_task
    print(
        f"cluster run: {run.sent} messages, {run.retries_agreed} doubled deliveries agreed, "
        f"{run.failed_over} failed over, {len(run.through_b)} cases via B"
    )
    return run


async def _until(check, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.1)


async def _until_async(fetch, ok, within: float):
    deadline = time.monotonic() + within
    while True:
        value = await fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last: {value!r}"[:500])
        await asyncio.sleep(0.3)
