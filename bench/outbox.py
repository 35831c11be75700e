"""Outbox bench: how fast bot/notify.py's OutboxWorker empties the outbox, against a bare aiohttp client.

    .venv/bin/python -m bench.outbox [--notices 10000] [--residents 2000] [--db sqlite|postgresql]
                                     [--large-batch 500] [--py-spy FILE] [--keep]

Starts the fake WeChat API (bot/wechat/fake.py) in its own process, enqueues the notices in a fresh database
(SQLite in a temp dir, or a fresh PostgreSQL database dropped at the end) and opens every resident's
customer-service window in the fake. Then, each in its own process and against the same fake (reset in
between): OutboxWorker ticking back-to-back on the configured defaults until the outbox is empty, and a bare
aiohttp client posting the same customer-service requests with the same concurrency. Prints deliveries/s, the
ratio (target ≥ 0.5), duplicates (must be 0) and CPU per process. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.cpu import CpuSnapshot, CpuUsage, cpu_usage, process_ticks
from bench.webhook import (
    BenchError,
    Processes,
    _child_env,
    _pct,
    _pg_admin,
    clean_up,
    free_port,
    run_cleanly,
    wait_healthy,
)
from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
FAKE_PREFIX = "/fake-wechat"


# ---- child roles: the fake API, the worker, the bare client ------------------------------------------------


def role_fake(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.clock import Clock
    from bot.wechat.fake import FakeWeChat

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.add_subapp(FAKE_PREFIX + "/", FakeWeChat.from_settings(Settings(), Clock()).app())
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, handle_signals=True)
    return 0


def _wait_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline().strip()
    if line != "go":
        raise SystemExit(f"expected 'go', got {line!r}")


def role_worker(args: argparse.Namespace) -> int:
    return asyncio.run(_worker(args))


async def _worker(args: argparse.Namespace) -> int:
    """OutboxWorker wired as bot/app.py wires it, ticking back-to-back until nothing is due."""
    import aiohttp

    from bot.clock import Clock
    from bot.notify import OutboxWorker
    from bot.wechat.api import DatabaseTokenStore, WeChatAPI
    from storage.db import Database
    from storage.fast import open_store

    settings = Settings()
    outbox = replace(settings.outbox, batch_size=args.batch_size) if args.batch_size else settings.outbox
    clock = Clock()
    db = Database(
        args.database_url,
        pool_size=settings.database.pool_size,
        sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
    )
    store = open_store(  # the worker's own plain-SQL store, as bot/app.py hands it app[STORE]
        args.database_url,
        pool_size=settings.database.pool_size,
        sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
    )
    try:
        async with aiohttp.ClientSession() as http:
            owner = f"bench-worker:{os.getpid()}"
            api = WeChatAPI.from_settings(
                http,
                settings.wechat,
                clock,
                base_url=args.api_base,
                token_store=DatabaseTokenStore(db, settings.wechat.app_id),
                owner=owner,
                token_lease_seconds=settings.push.token_lease_seconds,
            )
            worker = OutboxWorker(store, api, clock, outbox, owner, push=settings.push)
            await api.access_token()  # once per process; not part of the timed run (the bare client gets its own)
            await asyncio.to_thread(_wait_go)
            ticks = sent = empty = 0
            start = time.perf_counter()
            deadline = start + args.timeout
            while time.perf_counter() < deadline:
                n = await worker.tick()
                ticks += 1
                sent += n
                if n == 0:
                    if not await worker._anything_due():
                        break
                    empty += 1
                    await asyncio.sleep(0.01)  # something due but held back (a lease, an earlier row): look again
            seconds = time.perf_counter() - start
    finally:
        await store.close()
        await db.dispose()
    print(json.dumps({"seconds": seconds, "ticks": ticks, "sent": sent, "empty_ticks": empty}), flush=True)
    return 0


def role_bare(args: argparse.Namespace) -> int:
    return asyncio.run(_bare(args, json.loads(Path(args.bodies).read_text())))


async def _bare(args: argparse.Namespace, bodies: list[dict]) -> int:
    """The least a sender must do: POST each customer-service request, read the JSON, check errcode."""
    import aiohttp

    wechat = Settings().wechat
    async with aiohttp.ClientSession() as http:
        token_body = {"grant_type": "client_credential", "appid": wechat.app_id, "secret": wechat.app_secret}
        async with http.post(f"{args.api_base}/cgi-bin/stable_token", json=token_body) as resp:
            token = (await resp.json())["access_token"]
        url = f"{args.api_base}/cgi-bin/message/custom/send"
        params = {"access_token": token}
        headers = {"Content-Type": "application/json; charset=utf-8"}
        timeout = aiohttp.ClientTimeout(total=wechat.api_timeout_seconds)
        queue = iter(bodies)
        ok = 0
        errors: Counter[str] = Counter()

        async def sender() -> None:
            nonlocal ok
            for body in queue:
                data = json.dumps(body, ensure_ascii=False).encode()
                try:
                    async with http.post(url, params=params, data=data, headers=headers, timeout=timeout) as resp:
                        answer = json.loads(await resp.read())
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if answer.get("errcode", 0):
                    errors[str(answer["errcode"])] += 1
                else:
                    ok += 1

        await asyncio.to_thread(_wait_go)
        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "sent": ok, "errors": dict(errors)}), flush=True)
    return 0


# ---- the database: schema, residents, notices --------------------------------------------------------------


def notice_text(run_id: str, i: int) -> str:
    return f"【市民热线】您的投诉 FD{run_id}-{i:05d} 已受理，承办单位将在 5 个工作日内答复。回复“查询”可查看进度。"


def openid_of(run_id: str, resident: int) -> str:
    return f"oBench{run_id}{resident:06d}"


async def _fill(database_url: str, run_id: str, notices: int, residents: int) -> None:
    """Residents with an open window (as their inbound message would have left it) and the notices, in
    transactions of 2,000 rows; notice i goes to resident i mod N, so a batch holds many residents."""
    from bot.clock import Clock
    from bot.services.outbox import enqueue_text
    from storage.fast import open_store

    clock = Clock()
    store = open_store(database_url)
    try:
        async with store.write() as tx:
            await tx.run("DELETE FROM outbox")
            await tx.run("DELETE FROM residents")
            now = tx.ts(clock.now())
            for r in range(residents):
                await tx.run(
                    "INSERT INTO residents (openid, subscribed, created_at, last_message_at, cs_sent_since_message,"
                    " cs_sent_since_event) VALUES (:openid, :sub, :now, :now, 0, 0)",
                    openid=openid_of(run_id, r),
                    sub=True,
                    now=now,
                )
        for first in range(0, notices, 2000):
            async with store.write() as tx:
                for i in range(first, min(first + 2000, notices)):
                    await enqueue_text(
                        tx,
                        clock,
                        openid_of(run_id, i % residents),
                        notice_text(run_id, i),
                        notice="accepted",
                        case_number=f"FD{run_id}-{i:05d}",
                        status_text="已受理",
                    )
        if not store.is_sqlite:
            # A live table has statistics (autovacuum analyzes it); a freshly filled one has none, and the
            # planner's guesses for it would measure a database nobody runs.
            async with store.write() as tx:
                await tx.run("ANALYZE outbox")
                await tx.run("ANALYZE residents")
    finally:
        await store.close()


async def _outbox_status(database_url: str) -> dict[str, int]:
    from storage.fast import open_store

    store = open_store(database_url)
    try:
        async with store.write() as tx:  # PgStore has no read()
            rows = await tx.all("SELECT status, count(*) AS n FROM outbox GROUP BY status")
        return {row["status"]: row["n"] for row in rows}
    finally:
        await store.close()


def fill_database(database_url: str, run_id: str, args: argparse.Namespace) -> None:
    asyncio.run(_fill(database_url, run_id, args.notices, args.residents))


# ---- the fake's control endpoints ----------------------------------------------------------------------------


async def _open_windows(base: str, run_id: str, residents: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/reset") as resp:
            resp.raise_for_status()
        openids = iter(openid_of(run_id, r) for r in range(residents))

        async def opener() -> None:
            for openid in openids:
                async with http.post(f"{base}/inbound", json={"openid": openid, "kind": "message"}) as resp:
                    resp.raise_for_status()

        await asyncio.gather(*(opener() for _ in range(20)))


def reset_fake(base: str, run_id: str, residents: int) -> None:
    """Forget what was sent and open every resident's 48-hour window (quota 5) afresh."""
    asyncio.run(_open_windows(base, run_id, residents))


def fetch_sent(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/sent", timeout=60) as resp:
        return json.loads(resp.read())


# ---- one measured phase ----------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    concurrency: int
    seconds: float = math.nan
    reported: int = 0  # what the child says it sent
    ticks: int = 0
    empty_ticks: int = 0
    client_errors: dict = field(default_factory=dict)
    deliveries: int = 0  # customer-service messages the fake recorded
    templates: int = 0  # template messages the fake recorded (fallbacks; expected 0)
    duplicates: int = 0  # notice contents delivered more than once
    missing: int = 0  # notices never delivered
    outbox: dict = field(default_factory=dict)
    cpu: CpuUsage = field(default_factory=CpuUsage)

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds > 0 else math.nan

    def check(self, sent: list[dict], expected: set[str]) -> None:
        custom = [m["content"] for m in sent if m["api"] == "custom/send"]
        self.deliveries = len(custom)
        self.templates = sum(1 for m in sent if m["api"] == "template/send")
        counts = Counter(custom)
        self.duplicates = sum(n - 1 for n in counts.values() if n > 1)
        self.missing = len(expected - set(counts))


def run_child(
    procs: Processes, name: str, cmd: list[str], fake_pid: int, py_spy: str | None = None
) -> tuple[dict, CpuUsage]:
    proc = procs.start(name, cmd, cwd=ROOT, env=_child_env(), pipes=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise BenchError(f"{name} did not start ({line!r}):\n{procs.log_tail(name)}")
    pids = {"server": proc.pid, "fake": fake_pid, "bench": os.getpid()}
    spy = _start_py_spy(procs, py_spy, proc.pid) if py_spy else None
    before = CpuSnapshot.take(pids)
    if spy is not None:
        pids["py-spy"] = spy.pid
        before.processes["py-spy"] = process_ticks(spy.pid)
    t0 = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    after = CpuSnapshot.take(pids)
    if not out:
        raise BenchError(f"{name} ended without results:\n{procs.log_tail(name)}")
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("warning: py-spy did not finish", file=sys.stderr)
        procs.stop("py-spy")
    proc.stdin.close()
    try:
        proc.wait(timeout=30)  # it has printed its result and is closing its sessions
    except subprocess.TimeoutExpired:
        pass
    if procs.stop(name) not in (0, None):
        print(f"warning: {name} did not exit cleanly:\n{procs.log_tail(name)}", file=sys.stderr)
    return json.loads(out), cpu_usage(before, after, elapsed, proc.pid)


def _start_py_spy(procs: Processes, output: str, pid: int) -> subprocess.Popen:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise BenchError("--py-spy needs py-spy (.venv/bin/pip install py-spy)")
    fmt = "flamegraph" if output.endswith(".svg") else "speedscope" if output.endswith(".json") else "raw"
    cmd = [exe, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", fmt]
    proc = procs.start("py-spy", [*cmd, "--output", str(Path(output).resolve())], cwd=ROOT, env=dict(os.environ))
    time.sleep(0.5)  # let it attach before the clock starts
    return proc


def worker_phase(
    procs: Processes, label: str, args: argparse.Namespace, ctx: dict, batch_size: int, py_spy: str | None
) -> Phase:
    fill_database(ctx["database_url"], ctx["run_id"], args)
    reset_fake(ctx["fake"], ctx["run_id"], args.residents)
    cmd = [
        sys.executable,
        "-m",
        "bench.outbox",
        "--role",
        "worker",
        "--database-url",
        ctx["database_url"],
        "--api-base",
        ctx["fake"],
        "--batch-size",
        str(batch_size),
        "--timeout",
        str(args.timeout),
    ]
    result, cpu = run_child(procs, f"worker-{batch_size}", cmd, ctx["fake_pid"], py_spy)
    phase = Phase(label, batch_size, result["seconds"], result["sent"], result["ticks"], result["empty_ticks"])
    phase.cpu = cpu
    phase.check(fetch_sent(ctx["fake"]), ctx["expected"])
    phase.outbox = asyncio.run(_outbox_status(ctx["database_url"]))
    return phase


def bare_phase(procs: Processes, args: argparse.Namespace, ctx: dict, concurrency: int) -> Phase:
    reset_fake(ctx["fake"], ctx["run_id"], args.residents)
    cmd = [
        sys.executable,
        "-m",
        "bench.outbox",
        "--role",
        "bare",
        "--api-base",
        ctx["fake"],
        "--bodies",
        str(ctx["bodies"]),
        "--concurrency",
        str(concurrency),
    ]
    result, cpu = run_child(procs, f"bare-{concurrency}", cmd, ctx["fake_pid"])
    phase = Phase(f"bare aiohttp ({concurrency} in flight)", concurrency, result["seconds"], result["sent"])
    phase.client_errors = result["errors"]
    phase.cpu = cpu
    phase.check(fetch_sent(ctx["fake"]), ctx["expected"])
    return phase


# ---- report ----------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, pairs: list[tuple[Phase, Phase]], settings: Settings) -> bool:
    db = "SQLite" if args.db == "sqlite" else "PostgreSQL"
    o = settings.outbox
    print()
    print(
        f"outbox bench — {args.notices:,} text notices to {args.residents:,} residents, outbox on {db}, "
        f"{os.cpu_count()} CPUs; worker defaults: batch_size {o.batch_size}, ticks back-to-back "
        f"(tick_seconds {o.tick_seconds:g} not waited)"
    )
    print()
    head = f"{'':<46}{'deliv/s':>9}{'seconds':>9}{'deliv':>8}{'dup':>6}{'missing':>9}{'templ':>7}{'ticks':>7}"
    print(head)
    print("-" * len(head))
    phases = [p for pair in pairs for p in pair]
    for p in phases:
        ticks = f"{p.ticks:,}" if p.ticks else "-"
        print(
            f"{p.label:<46}{p.rate:>9,.0f}{p.seconds:>9.2f}{p.deliveries:>8,}{p.duplicates:>6,}{p.missing:>9,}"
            f"{p.templates:>7,}{ticks:>7}"
        )
    for p in phases:
        if p.outbox:
            states = ", ".join(f"{k} {v:,}" for k, v in sorted(p.outbox.items()))
            print(f"  {p.label}: outbox rows afterwards: {states}; worker reported {p.reported:,} sent")
        if p.client_errors:
            print(f"  {p.label}: errors {p.client_errors}")
        if p.empty_ticks:
            print(f"  {p.label}: {p.empty_ticks} tick(s) found rows due but none claimable")
    print()
    cores = os.cpu_count() or 1
    print(f"CPU while each phase ran, % of one core (this machine has {cores} cores = {100 * cores} %):")
    spy = any("py-spy" in p.cpu.processes for p in phases)
    print(
        f"{'':<46}{'sender':>8}{'(loop':>7}{'other)':>8}{'fake API':>10}{'bench':>7}"
        + (f"{'py-spy':>8}" if spy else "")
        + f"{'others':>8}{'machine busy':>14}"
    )
    for p in phases:
        c = p.cpu
        print(
            f"{p.label:<46}{_pct(c.processes.get('server')):>8}{_pct(c.server_main_thread):>7}"
            f"{_pct(c.server_other_threads):>8}{_pct(c.processes.get('fake')):>10}{_pct(c.processes.get('bench')):>7}"
            + (f"{_pct(c.processes.get('py-spy')):>8}" if spy else "")
            + f"{_pct(c.others):>8}{_pct(c.machine_busy):>14}"
        )
    print("  sender = the worker or the bare client process: (loop) its main thread, (other) its other threads")
    print("  alive at the end (aiosqlite's connection threads on SQLite; threads that ended during the run count in")
    print("  sender only); others = the rest of the machine (PostgreSQL's backends, anything outside the bench)")
    print()
    ok = True
    for worker, bare in pairs:
        ratio = worker.rate / bare.rate if bare.rate else math.nan
        standard = worker.concurrency == o.batch_size
        verdict = ("PASS" if ratio >= TARGET_RATIO else "MISS") if standard else "(info)"
        print(
            f"{'ratio ' + worker.label:<46}{ratio:>9.1%}   worker / bare at {worker.concurrency} in flight: target "
            f"≥ {TARGET_RATIO:.0%} {verdict}"
        )
    for p in phases:
        good = p.duplicates == 0 and p.missing == 0 and p.deliveries == args.notices
        ok = ok and good
        print(
            f"{'exactly once ' + p.label:<46}{'PASS' if good else 'FAIL':>9}   {p.duplicates} duplicate(s), "
            f"{p.missing} missing, {p.deliveries:,} of {args.notices:,} delivered"
        )
    return ok


# ---- main ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    run_id = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="frontdoor-bench-outbox-"))
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    pg_name = None
    try:
        if args.db == "postgresql":
            name = f"frontdoor_bench_{run_id}"
            try:
                asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{name}"'))
            except Exception as exc:
                raise BenchError(f"cannot create a database at {args.pg_admin_url}: {exc}") from None
            pg_name = name
            server = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
            database_url = f"postgresql+asyncpg://{server}/{pg_name}"
        else:
            database_url = f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
        from storage.migrate import upgrade

        upgrade(database_url)
        logging.getLogger().setLevel(logging.WARNING)  # alembic's fileConfig may have turned INFO on
        port = free_port()
        fake = procs.start(
            "fake", [sys.executable, "-m", "bench.outbox", "--role", "fake", "--port", str(port)], cwd=ROOT,
            env=_child_env(),
        )  # fmt: skip
        wait_healthy(f"http://127.0.0.1:{port}", fake, procs, "fake")
        base = f"http://127.0.0.1:{port}{FAKE_PREFIX}"
        bodies = [
            {
                "touser": openid_of(run_id, i % args.residents),
                "msgtype": "text",
                "text": {"content": notice_text(run_id, i)},
            }
            for i in range(args.notices)
        ]
        bodies_file = workdir / "bodies.json"
        bodies_file.write_text(json.dumps(bodies, ensure_ascii=False))
        ctx = {
            "run_id": run_id,
            "database_url": database_url,
            "fake": base,
            "fake_pid": fake.pid,
            "bodies": bodies_file,
            "expected": {b["text"]["content"] for b in bodies},
        }
        print(f"fake WeChat API on :{port}, outbox on {args.db} (work dir {workdir})", flush=True)
        batches = [settings.outbox.batch_size] + ([args.large_batch] if args.large_batch else [])
        pairs = []
        for batch in batches:
            standard = batch == settings.outbox.batch_size
            label = f"OutboxWorker (batch {batch}{', default' if standard else ''})"
            print(f"{label}: {args.notices:,} notices ...", flush=True)
            worker = worker_phase(procs, label, args, ctx, batch, args.py_spy if standard else None)
            print(f"bare aiohttp client, {batch} in flight ...", flush=True)
            pairs.append((worker, bare_phase(procs, args, ctx, batch)))
        ok = report(args, pairs, settings)
        if args.py_spy:
            print(f"py-spy profile of the default-batch worker: {Path(args.py_spy).resolve()}")
        if procs.stop("fake") not in (0, None):
            print(f"warning: the fake did not stop cleanly:\n{procs.log_tail('fake')}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        clean_up(procs, args, workdir, pg_name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.outbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--notices", type=int, default=10_000, help="text notices to deliver (default 10,000)")
    p.add_argument(
        "--residents", type=int, default=2_000, help="recipients; notices ≤ 5 × residents (window quota, default 2,000)"
    )
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the throwaway database for --db postgresql",
    )
    p.add_argument(
        "--large-batch",
        type=int,
        default=0,
        metavar="N",
        help="also run the worker (and the bare client) with batch_size N / N in flight, labelled (default off)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="give up on a worker run after this many seconds")
    p.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile the default-batch worker process with py-spy: .svg flame graph, .json speedscope, "
        "anything else collapsed stacks (text)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (database, logs)")
    # Internal: how the conductor starts its children.
    p.add_argument(
        "--role", choices=["conductor", "fake", "worker", "bare"], default="conductor", help=argparse.SUPPRESS
    )
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    p.add_argument("--api-base", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--bodies", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=50, help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = parser().parse_args()
    if args.role != "conductor":
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return {"fake": role_fake, "worker": role_worker, "bare": role_bare}[args.role](args)
    quota = Settings().fake_wechat.window_quota
    if args.notices < 1 or args.residents < 1 or args.notices > quota * args.residents:
        print(f"need 1 ≤ notices ≤ {quota} × residents (the fake's window quota)", file=sys.stderr)
        return 2
    return run_cleanly(run, args)


if __name__ == "__main__":
    sys.exit(main())
