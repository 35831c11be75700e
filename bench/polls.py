"""Polls bench: an opinion poll put to a whole grid — distribution, a wave of votes, the exact tally, the results.

    .venv/bin/python -m bench.polls [--residents 10000] [--concurrency 64] [--db sqlite|postgresql] [--keep]

Starts a real `frontdoor serve` (scheduler running, the fake WeChat API built in) on a fresh migrated database
(SQLite in a temp dir, or a fresh PostgreSQL database dropped at the end) and the echo baseline
(bench/echo_server.py). Seeds the database directly: 区/街道/社区/网格, N residents of that grid who wrote just
now (the fake is told so too), a grid worker bound to an openid. Creates one poll (3 options, single choice,
anonymous) and measures how long the scheduler and the outbox take to put it to all N as msgmenu messages. Then
a load generator process (its own OS process) makes every resident vote through the webhook, signed and
encrypted as WeChat does (bench/loadgen.py's Wire): half tap their option, half type its number, 5 % vote twice,
1 % send an invalid "9" first; every answer is checked. The same messages go to the echo baseline for the
ratio. The tally in the database must match exactly. Finally the deadline is moved to 3 s from now and the time
until the creator's results message reaches the fake is measured. Everything started is stopped and removed at
the end, also on Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.cpu import CpuSnapshot, CpuUsage, cpu_usage
from bench.webhook import (
    BenchError,
    Processes,
    _child_env,
    _fmt_ms,
    _pct,
    _pg_admin,
    clean_up,
    free_port,
    frontdoor_cmd,
    run_cleanly,
    summarize_log,
    wait_healthy,
)
from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
FAKE_PREFIX = "/fake-wechat"
QUESTION = "小区停车费定为每月160元，您是否接受？"
OPTIONS = ("接受", "不接受", "希望降低")
WORKER_NAME = "网格员小王"
# The deadline, once the votes are in: this far ahead (the poll itself must run ≥ polls.min_hours).
DEADLINE_SECONDS = 3.0


def openid_prefix(run_id: str) -> str:
    return f"oPoll{run_id}_"


def worker_openid(run_id: str) -> str:
    return f"oPollWorker{run_id}"


# ---- what each resident does (shared by the conductor's expectations and the generator) -----------------------


@dataclass(frozen=True)
class Step:
    kind: str  # vote · repeat (the same vote again) · invalid (a "9" first)
    text: str  # what the resident sends (a tap sends the option's label as text)
    menu_id: str | None  # the tapped msgmenu option's id (bizmsgmenuid); None when typed
    choice: int


def choice_of(i: int) -> int:
    return i % len(OPTIONS) + 1


def taps(i: int) -> bool:
    return i % 2 == 0  # half tap the msgmenu option, half type the number


def repeats(i: int) -> bool:
    return i % 40 in (6, 27)  # 5 %, tappers and typers alike


def tries_invalid(i: int) -> bool:
    return i % 200 in (13, 114)  # 1 %, a typer and a tapper


def script(i: int, menu: list[list[str]]) -> list[Step]:
    """Resident i's messages in order. `menu`: the [id, label] of each option as the msgmenu carried it."""
    choice = choice_of(i)
    option_id, label = menu[choice - 1]
    steps = []
    if tries_invalid(i):
        steps.append(Step("invalid", "9", None, choice))
    vote = Step("vote", label, option_id, choice) if taps(i) else Step("vote", str(choice), None, choice)
    steps.append(vote)
    if repeats(i):
        steps.append(Step("repeat", vote.text, vote.menu_id, choice))
    return steps


def expected_tally(residents: int) -> list[int]:
    counts = [0] * len(OPTIONS)
    for i in range(residents):
        counts[choice_of(i) - 1] += 1
    return counts


# ---- the load generator (its own process) ---------------------------------------------------------------------


class Voters:
    """Every resident casts their vote(s), `concurrency` requests in flight, each resident's messages in order."""

    def __init__(self, args: argparse.Namespace):
        from bench.loadgen import Wire
        from bot.services.polls import PollError
        from bot.texts import Texts

        self.args = args
        settings = Settings()
        self.wire = Wire(settings, args.url)
        self.menu = json.loads(args.menu)
        texts = Texts(settings.texts.override_file)
        labels = [label for _id, label in self.menu]
        # What frontdoor must answer, per kind of step and choice; the echo server repeats the text.
        self.expect = {
            "vote": [texts("poll.voted", choices=label) for label in labels],
            "repeat": [texts("poll.unchanged", choices=label) for label in labels],
            "invalid": [PollError("out_of_range", count=len(labels)).text(texts)] * len(labels),
        }
        self.hint = texts("poll.results_hint", id=args.poll_id)
        self.latencies: list[float] = []
        self.ok: Counter[str] = Counter()
        self.deferred: list[tuple[str, str]] = []  # (openid, what the answer must contain), checked at the fake
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def _sign(self, openid: str, step: Step):
        from bot.wechat.simulator import message_xml, text_xml

        if step.menu_id is None:
            return self.wire.sign_xml(openid, text_xml(openid, step.text), step.text)
        xml = message_xml(openid, "text", {"Content": step.text, "bizmsgmenuid": step.menu_id})
        return self.wire.sign_xml(openid, xml, step.text)

    def presign(self) -> list[tuple[str, list]]:
        prefix = self.args.prefix
        plans = []
        for i in range(self.args.residents):
            openid = f"{prefix}{i}"
            plans.append((openid, [(step, self._sign(openid, step)) for step in script(i, self.menu)]))
        return plans

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    def _check(self, openid: str, step: Step, answer: str | None) -> None:
        if answer is None:  # deferred: frontdoor sends the answer as a customer-service message
            if self.args.mode == "echo":
                self._error("unexpected", f"echo server deferred {step.text!r}")
            else:
                self.deferred.append((openid, self.expect[step.kind][step.choice - 1]))
            return
        if self.args.mode == "echo":
            good = answer == step.text
        else:
            good = self.expect[step.kind][step.choice - 1] in answer
            good = good and (step.kind == "invalid" or self.hint in answer)
        if good:
            self.ok[step.kind] += 1
        else:
            self._error("unexpected", f"{step.kind} {step.text!r}: {answer!r}")

    async def _send(self, http, request) -> tuple[int | None, str, Exception | None]:
        import aiohttp

        from bench.loadgen import HEADERS

        try:
            async with http.post(request.url, data=request.body, headers=HEADERS) as resp:
                return resp.status, await resp.text(), None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, "", exc

    async def run(self) -> dict:
        import aiohttp

        from bot.wechat.simulator import ReplyError

        plans = self.presign()
        queue = iter(plans)
        connector = aiohttp.TCPConnector(limit=self.args.concurrency + 8, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=self.args.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            print("ready", flush=True)
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if line.strip() != "go":
                raise SystemExit(f"expected 'go', got {line!r}")

            async def resident_worker(delay: float) -> None:
                await asyncio.sleep(delay)  # spread the first connects over a few milliseconds
                for openid, steps in queue:
                    for step, request in steps:
                        started = time.perf_counter()
                        status, body, failure = await self._send(http, request)
                        self.latencies.append((time.perf_counter() - started) * 1000)
                        if failure is not None:
                            self._error(type(failure).__name__, str(failure) or repr(failure))
                            continue
                        try:
                            answer = self.wire.open(status, body)
                        except ReplyError as exc:
                            self._error("ReplyError", str(exc))
                            continue
                        self._check(openid, step, answer)

            start = time.perf_counter()
            await asyncio.gather(*(resident_worker(random.random() * 0.05) for _ in range(self.args.concurrency)))
            seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "requests": len(self.latencies),
            "ok": dict(self.ok),
            "deferred": self.deferred,
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "latencies_ms": self.latencies,
        }


def role_voters(args: argparse.Namespace) -> int:
    result = asyncio.run(Voters(args).run())
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


# ---- the database: seeding, the poll, what it says ------------------------------------------------------------


@dataclass
class Seeded:
    grid_id: int
    grid_path: str
    worker_id: int
    seconds: float


async def seed(database_url: str, run_id: str, residents: int, now: datetime) -> Seeded:
    """The tree, the grid worker (bound through an invite, as 绑定 <code> does) and N residents of the grid who
    wrote just now (window open), in one transaction; the residents in one INSERT … SELECT."""
    from bot.services import areas, gridworkers
    from storage.fast import open_store

    started = time.perf_counter()
    store = open_store(database_url)
    try:
        async with store.write() as tx:
            d = await areas.add(tx, "district", "云岩区", parent=None, now=now)
            s = await areas.add(tx, "street", "中华路街道", parent=d, now=now)
            c = await areas.add(tx, "community", "云城社区", parent=s, now=now)
            grid = await areas.add(tx, "grid", "第一网格", parent=c, now=now, code="YC01")
            worker = await gridworkers.ensure(tx, WORKER_NAME, now=now)
            await gridworkers.assign(tx, worker, grid)
            code = await gridworkers.invite(tx, worker, now=now, valid=timedelta(hours=72))
            worker = await gridworkers.bind(tx, code, worker_openid(run_id), now=now)
            await tx.run(
                "UPDATE residents SET last_message_at = :now WHERE openid = :openid",
                now=tx.ts(now),
                openid=worker_openid(run_id),
            )

            def cast(param: str, sql_type: str) -> str:  # PostgreSQL must be told a SELECT list's types
                return param if tx.is_sqlite else f"CAST({param} AS {sql_type})"

            inserted = await tx.run(
                "INSERT INTO residents (openid, subscribed, created_at, last_message_at, cs_sent_since_message, "
                "cs_sent_since_event, grid_id) "
                "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < :last) "
                f"SELECT {cast(':prefix', 'text')} || n, {cast(':yes', 'boolean')}, {cast(':now', 'timestamptz')}, "
                f"{cast(':now', 'timestamptz')}, 0, 0, {cast(':grid', 'integer')} FROM seq",
                last=residents - 1,
                prefix=openid_prefix(run_id),
                yes=True,
                now=tx.ts(now),
                grid=grid.id,
            )
            if inserted != residents:
                raise BenchError(f"seeded {inserted} residents, not {residents}")
        if not store.is_sqlite:
            async with store.write() as tx:  # a live table has statistics (autovacuum)
                await tx.run("ANALYZE residents")
    finally:
        await store.close()
    return Seeded(grid.id, grid.path, worker.id, time.perf_counter() - started)


async def create_poll(database_url: str, seeded: Seeded, settings: Settings) -> tuple[int, datetime]:
    """The poll, as the console creates it: its distribution due at once. (id, when it was committed)."""
    from bot.services import polls
    from storage.fast import open_store

    now = datetime.now(UTC)
    spec = polls.Spec(
        question=QUESTION,
        options=OPTIONS,
        closes_at=now + timedelta(hours=max(2, settings.polls.min_hours + 1)),
        audience=(seeded.grid_id,),
        max_choices=1,
        anonymous=True,
        notify_voters=False,
    )
    store = open_store(database_url)
    try:
        async with store.write() as tx:
            poll_id = await polls.create(
                tx, spec, creator_name=WORKER_NAME, worker_id=seeded.worker_id, via="console", now=now,
                settings=settings.polls,
            )  # fmt: skip
        return poll_id, datetime.now(UTC)
    finally:
        await store.close()


async def query(database_url: str, fn):
    """Run `fn(tx)` in one transaction of a store of our own."""
    from storage.fast import open_store

    store = open_store(database_url)
    try:
        async with store.write() as tx:  # PgStore has no read(); on SQLite a write is short here
            return await fn(tx)
    finally:
        await store.close()


async def pending_rows(tx) -> int:
    return int(await tx.val("SELECT count(*) FROM outbox WHERE status = 'pending'"))


async def distribution_state(tx, poll_id: int) -> tuple[datetime | None, int]:
    distributed = await tx.val("SELECT distributed_at FROM polls WHERE id = :id", id=poll_id)
    return tx.dt(distributed), await pending_rows(tx)


async def outbox_states(tx) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await tx.all("SELECT status, count(*) AS n FROM outbox GROUP BY status")}


@dataclass
class TallyCheck:
    wechat: list[int]
    expected: list[int]
    voters: int
    ballots: int
    distinct_keys: int
    marked_voted: int
    door: int
    residents: int

    @property
    def ok(self) -> bool:
        n = self.residents
        return (
            self.wechat == self.expected
            and self.voters == self.ballots == self.distinct_keys == self.marked_voted == n
            and self.door == 0
        )


async def check_tally(tx, poll_id: int, residents: int) -> TallyCheck:
    from bot.services import polls

    poll = await polls.get(tx, poll_id)
    t = await polls.tally(tx, poll)
    row = await tx.one(
        "SELECT count(*) AS n, count(DISTINCT voter_key) AS k FROM poll_ballots WHERE poll_id = :p", p=poll_id
    )
    marked = await tx.val("SELECT count(*) FROM poll_recipients WHERE poll_id = :p AND voted_at IS NOT NULL", p=poll_id)
    return TallyCheck(
        t.wechat, expected_tally(residents), t.wechat_voters, row["n"], row["k"], marked, t.door_voters, residents
    )


async def set_deadline(tx, poll_id: int, deadline: datetime) -> None:
    """The poll closes at `deadline`: closes_at, and the durable 'close' job the scheduler fires."""
    polls_row = await tx.run("UPDATE polls SET closes_at = :at WHERE id = :id", at=tx.ts(deadline), id=poll_id)
    job = await tx.run(
        "UPDATE poll_jobs SET fire_at = :at WHERE poll_id = :id AND kind = 'close' AND status = 'pending'",
        at=tx.ts(deadline),
        id=poll_id,
    )
    if (polls_row, job) != (1, 1):
        raise BenchError(f"could not move the deadline (polls {polls_row}, poll_jobs {job} rows)")


async def expected_results(tx, poll_id: int, settings: Settings) -> tuple[str, str, datetime | None, str | None]:
    """(the creator's results message as the tally says it, the poll's status, closed_at, closed_by)."""
    from bot.services import polls
    from bot.texts import Texts

    texts = Texts(settings.texts.override_file)
    poll = await polls.get(tx, poll_id)
    text = polls.results_text(texts, poll, await polls.tally(tx, poll))
    return texts("poll.closed_creator", results=text), poll.status, poll.closed_at, poll.closed_by


# ---- the fake WeChat API's control endpoints --------------------------------------------------------------------


async def tell_fake_they_wrote(http, fake: str, openids: list[str], concurrency: int = 32) -> None:
    """Each resident's message reached WeChat: the fake opens their 48-hour window (one call per openid)."""
    todo = iter(openids)

    async def opener() -> None:
        for openid in todo:
            async with http.post(f"{fake}/inbound", json={"openid": openid, "kind": "message"}) as resp:
                resp.raise_for_status()

    await asyncio.gather(*(opener() for _ in range(concurrency)))


async def fetch_sent(http, fake: str, touser: str | None = None) -> list[dict]:
    params = {"touser": touser} if touser else None
    async with http.get(f"{fake}/sent", params=params) as resp:
        resp.raise_for_status()
        return await resp.json()


def check_menus(sent: list[dict], prefix: str, residents: int, poll_id: int) -> tuple[list[list[str]], list[str]]:
    """Every resident got exactly one msgmenu, with the poll's options; (the options as sent, problems)."""
    from bot.services.polls import menu_id

    expected = [[menu_id(poll_id, k), f"{k}. {o}"] for k, o in enumerate(OPTIONS, 1)]
    counts: Counter[str] = Counter()
    problems = []
    for m in sent:
        if m["msgtype"] != "msgmenu":
            continue
        counts[m["touser"]] += 1
        options = [[o["id"], o["content"]] for o in m["payload"]["msgmenu"]["list"]]
        if options != expected and len(problems) < 3:
            problems.append(f"msgmenu to {m['touser']} carries {options}, expected {expected}")
    wanted = {f"{prefix}{i}" for i in range(residents)}
    missing = wanted - set(counts)
    twice = [o for o, n in counts.items() if n > 1]
    extra = set(counts) - wanted
    if missing:
        problems.append(f"{len(missing)} resident(s) got no msgmenu")
    if twice:
        problems.append(f"{len(twice)} resident(s) got it more than once")
    if extra:
        problems.append(f"{len(extra)} msgmenu(s) went to someone outside the grid")
    return expected, problems


# ---- one voting phase -------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = math.nan
    requests: int = 0
    ok: Counter = field(default_factory=Counter)
    deferred: list = field(default_factory=list)
    deferred_ok: int = 0
    errors: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: CpuUsage = field(default_factory=CpuUsage)

    @property
    def answered(self) -> int:
        return sum(self.ok.values())

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else math.nan

    def percentile(self, q: float, latencies: list[float] | None = None) -> float:
        values = self.latencies if latencies is None else latencies
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def trend(self) -> tuple[float, float]:
        """p50 of the first and of the last fifth of the messages (in the order they finished): a server that
        slows down as its tables fill shows here."""
        fifth = max(1, len(self.latencies) // 5)
        return self.percentile(0.5, self.latencies[:fifth]), self.percentile(0.5, self.latencies[-fifth:])


def run_voters(
    procs: Processes, name: str, server: str, args: argparse.Namespace, url: str, mode: str, poll_id: int, menu
) -> Phase:
    cmd = [
        sys.executable, "-m", "bench.polls", "--role", "voters", "--url", url, "--mode", mode,
        "--residents", str(args.residents), "--concurrency", str(args.concurrency), "--prefix",
        args.prefix, "--poll-id", str(poll_id), "--menu", json.dumps(menu, ensure_ascii=False),
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    gen_name = f"{name}-generator"
    proc = procs.start(gen_name, cmd, cwd=ROOT, env=_child_env(), pipes=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise BenchError(f"{gen_name} did not start ({line!r}):\n{procs.log_tail(gen_name)}")
    pids = {"server": procs.running[server].pid, "generator": proc.pid, "bench": os.getpid()}
    before = CpuSnapshot.take(pids)
    t0 = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    after = CpuSnapshot.take(pids)
    if not out:
        raise BenchError(f"{gen_name} ended without results:\n{procs.log_tail(gen_name)}")
    procs.stop(gen_name)
    result = json.loads(out)
    phase = Phase(name, result["seconds"], result["requests"], Counter(result["ok"]), result["deferred"])
    phase.errors.update(result["errors"])
    phase.error_samples = result["error_samples"]
    phase.latencies = result["latencies_ms"]
    phase.cpu = cpu_usage(before, after, elapsed, pids["server"])
    return phase


async def check_deferred(http, fake: str, phase: Phase, database_url: str, wait_seconds: float = 60.0) -> None:
    """Deferred answers went out as customer-service messages: each must reach the fake, saying the right thing."""
    if not phase.deferred:
        return
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if await query(database_url, pending_rows) == 0:
            break
        await asyncio.sleep(0.2)
    texts_to: dict[str, list[str]] = {}
    for m in await fetch_sent(http, fake):
        if m["msgtype"] == "text":
            texts_to.setdefault(m["touser"], []).append(m["content"])
    for openid, expected in phase.deferred:
        if any(expected in t for t in texts_to.get(openid, [])):
            phase.deferred_ok += 1
        else:
            phase.errors["deferred_wrong_or_lost"] += 1
            if len(phase.error_samples) < 5:
                phase.error_samples.append(f"deferred answer to {openid} never said {expected!r}")


# ---- report ---------------------------------------------------------------------------------------------------


@dataclass
class Distribution:
    created: datetime
    distributed_at: datetime
    drained: datetime
    last_menu: datetime
    reached: int
    waiting: int
    audience: int
    outbox: dict
    problems: list[str]
    fake_seconds: float

    def after(self, moment: datetime) -> float:
        return (moment - self.created).total_seconds()


@dataclass
class Results:
    deadline: datetime
    closed_at: datetime | None = None
    pushed_at: datetime | None = None
    seen_at: datetime | None = None
    status: str = ""
    closed_by: str | None = None
    matches: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.pushed_at is not None and self.matches and self.status == "closed"


def _after(later: datetime | None, earlier: datetime) -> str:
    return "-" if later is None else f"{(later - earlier).total_seconds():.2f} s"


def report(
    args: argparse.Namespace,
    seeded: Seeded,
    dist: Distribution,
    front: Phase,
    echo: Phase,
    tally: TallyCheck,
    results: Results,
    settings: Settings,
) -> bool:
    n = args.residents
    db = "SQLite" if args.db == "sqlite" else "PostgreSQL"
    print()
    print(
        f"polls bench — {n:,} residents in {seeded.grid_path}, {len(OPTIONS)} options, single choice, anonymous; "
        f"frontdoor on {db}, {os.cpu_count()} CPUs, {args.concurrency} requests in flight"
    )
    print()
    print(
        f"seeded the tree, the grid worker and {n:,} residents in {seeded.seconds:.2f} s; the fake was told "
        f"{n + 1:,} of them wrote in {dist.fake_seconds:.2f} s"
    )
    total = dist.after(dist.last_menu)
    print(
        f"distribution: {n:,} msgmenus in {total:.2f} s from the poll's creation to the last one at the fake "
        f"({n / total if total > 0 else math.nan:,.0f}/s)"
    )
    print(
        f"  poll job done (distributed_at) after {dist.after(dist.distributed_at):.2f} s, outbox drained "
        f"(seen) after {dist.after(dist.drained):.2f} s; scheduler ticks: polls every "
        f"{settings.polls.tick_seconds:g} s (chunks of {settings.polls.chunk_size}), outbox every "
        f"{settings.outbox.tick_seconds:g} s"
    )
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(dist.outbox.items()))
    menus_ok = not dist.problems and dist.reached == dist.audience == n and dist.waiting == 0
    print(
        f"  audience {dist.audience:,}, reached {dist.reached:,}, waiting {dist.waiting:,}; outbox rows: {states}; "
        f"one msgmenu with the poll's options per resident: {'PASS' if menus_ok else 'FAIL'}"
    )
    for problem in dist.problems:
        print(f"    {problem}")
    print()
    steps = Counter(s.kind for i in range(n) for s in script(i, [["", ""]] * len(OPTIONS)))
    tapped = sum(1 for i in range(n) if taps(i))
    print(
        f"voting: {front.requests:,} messages — {steps['vote']:,} votes ({tapped:,} taps on the msgmenu option, "
        f'{n - tapped:,} typed numbers), {steps["repeat"]:,} repeated votes, {steps["invalid"]:,} invalid "9" first'
    )
    head = (
        f"{'':<22}{'msgs/s':>9}{'votes/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'deferred':>10}"
        f"{'answers':>9}{'seconds':>9}"
    )
    print(head)
    print("-" * len(head))
    for label, p in (("frontdoor (votes)", front), ("echo baseline", echo)):
        votes = f"{p.ok['vote'] / p.seconds:,.0f}" if p is front and p.seconds > 0 else "-"
        print(
            f"{label:<22}{p.rate:>9,.0f}{votes:>9}{_fmt_ms(p.percentile(0.5)):>9}{_fmt_ms(p.percentile(0.99)):>9}"
            f"{sum(p.errors.values()):>8,}{len(p.deferred):>10,}{p.answered:>9,}{p.seconds:>9.2f}"
        )
    ratio = front.rate / echo.rate if echo.rate else math.nan
    print(f"{'frontdoor / echo':<22}{ratio:>9.1%}   throughput ratio (the same messages, the same concurrency)")
    first, last = front.trend()
    print(
        f"  frontdoor p50 over the first fifth of the messages {_fmt_ms(first)} ms, the last fifth {_fmt_ms(last)} ms"
    )
    answers_ok = not front.errors and not echo.errors
    print(
        f"  answers: {front.ok['vote']:,} 已收到您的意见, {front.ok['repeat']:,} 无需重复提交, "
        f"{front.ok['invalid']:,} 没有这个选项 (of {steps['vote']:,} / {steps['repeat']:,} / {steps['invalid']:,})"
        + (f", {front.deferred_ok:,} deferred answers correct at the fake" if front.deferred else "")
        + f": {'PASS' if answers_ok else 'FAIL'}"
    )
    for p in (front, echo):
        if p.errors:
            print(f"  {p.name} errors: " + ", ".join(f"{k} {v:,}" for k, v in p.errors.most_common()))
            for sample in p.error_samples[:3]:
                print(f"    e.g. {sample}")
    print()
    print(f"{'CPU, % of one core':<22}{'server':>8}{'(loop':>7}{'other)':>8}{'generator':>11}{'others':>8}{'busy':>7}")
    for label, p in (("frontdoor phase", front), ("echo phase", echo)):
        c = p.cpu
        print(
            f"{label:<22}{_pct(c.processes.get('server')):>8}{_pct(c.server_main_thread):>7}"
            f"{_pct(c.server_other_threads):>8}{_pct(c.processes.get('generator')):>11}{_pct(c.others):>8}"
            f"{_pct(c.machine_busy):>7}"
        )
    print("  busy = % of all cores; others = the rest of the machine (PostgreSQL's backends, other jobs)")
    print()
    print("tally (polls.tally, from the database):")
    for k, (option, got, want) in enumerate(zip(OPTIONS, tally.wechat, tally.expected, strict=True), 1):
        print(f"  {k}. {option}: {got:,} (expected {want:,}){'' if got == want else '   ← differs'}")
    print(
        f"  voters {tally.voters:,}, ballots {tally.ballots:,}, distinct voter keys {tally.distinct_keys:,}, "
        f"recipients marked voted {tally.marked_voted:,}, door-to-door {tally.door:,} (expected: {n:,} each, door 0): "
        f"{'PASS' if tally.ok else 'FAIL'}"
    )
    print()
    print(
        f"results: deadline moved to {DEADLINE_SECONDS:g} s ahead once the votes were in; closed "
        f"{_after(results.closed_at, results.deadline)} after the deadline (by {results.closed_by or '-'}), the "
        f'creator\'s results at the fake {_after(results.pushed_at, results.deadline)} after it (its "at"; seen by '
        f"polling {_after(results.seen_at, results.deadline)} after)"
    )
    print(f"  the results message is what the tally says: {'PASS' if results.ok else 'FAIL'}{results.detail}")
    return tally.ok and results.ok and answers_ok and menus_ok


# ---- main -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the steps of one run share."""

    args: argparse.Namespace
    settings: Settings
    run_id: str
    database_url: str
    fake: str
    front: subprocess.Popen
    procs: Processes


async def distribute(r: Run, seeded: Seeded) -> tuple[int, list[list[str]], Distribution]:
    """Open every window in the fake, create the poll, wait until the scheduler and the outbox put it to all."""
    import aiohttp

    args = r.args
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        openids = [worker_openid(r.run_id), *(f"{args.prefix}{i}" for i in range(args.residents))]
        await tell_fake_they_wrote(http, r.fake, openids)
        fake_seconds = time.perf_counter() - t0
        print(f"distributing the poll to {args.residents:,} residents ...", flush=True)
        poll_id, created = await create_poll(r.database_url, seeded, r.settings)
        limit = time.monotonic() + max(120.0, args.residents / 20)
        while True:
            distributed_at, pending = await query(r.database_url, lambda tx: distribution_state(tx, poll_id))
            if distributed_at is not None and pending == 0:
                drained = datetime.now(UTC)
                break
            if time.monotonic() > limit:
                raise BenchError(f"distribution not done (distributed_at {distributed_at}, {pending} pending)")
            if r.front.poll() is not None:
                raise BenchError(f"frontdoor exited:\n{r.procs.log_tail('frontdoor')}")
            await asyncio.sleep(0.1)
        sent = await fetch_sent(http, r.fake)
    menu, problems = check_menus(sent, args.prefix, args.residents, poll_id)
    menus_at = [datetime.fromisoformat(m["at"]) for m in sent if m["msgtype"] == "msgmenu"]

    async def poll_row(tx):
        return await tx.one("SELECT reached, waiting, audience_size FROM polls WHERE id = :id", id=poll_id)

    row = await query(r.database_url, poll_row)
    dist = Distribution(
        created, distributed_at, drained, max(menus_at, default=drained), row["reached"], row["waiting"],
        row["audience_size"], await query(r.database_url, outbox_states), problems, fake_seconds,
    )  # fmt: skip
    if args.db == "postgresql":

        async def analyze(tx):  # as autovacuum would soon after 2 × N new rows
            for table in ("poll_recipients", "outbox", "residents"):
                await tx.run(f"ANALYZE {table}")

        await query(r.database_url, analyze)
    return poll_id, menu, dist


async def close_and_push(r: Run, poll_id: int, front_phase: Phase) -> tuple[TallyCheck, Results]:
    """The deferred answers and the tally; then the deadline 3 s ahead and the wait for the creator's results."""
    import aiohttp

    db = r.database_url
    async with aiohttp.ClientSession() as http:
        await check_deferred(http, r.fake, front_phase, db)
        tally = await query(db, lambda tx: check_tally(tx, poll_id, r.args.residents))
        deadline = datetime.now(UTC) + timedelta(seconds=DEADLINE_SECONDS)
        await query(db, lambda tx: set_deadline(tx, poll_id, deadline))
        print(f"deadline in {DEADLINE_SECONDS:g} s; waiting for the results push ...", flush=True)
        results = Results(deadline)
        head = (await query(db, lambda tx: expected_results(tx, poll_id, r.settings)))[0].split("\n", 1)[0]
        limit = time.monotonic() + DEADLINE_SECONDS + 60
        pushed = None
        while pushed is None and time.monotonic() < limit:
            for m in await fetch_sent(http, r.fake, worker_openid(r.run_id)):
                if m["msgtype"] == "text" and m["content"].startswith(head):
                    pushed, results.seen_at = m, datetime.now(UTC)
                    results.pushed_at = datetime.fromisoformat(m["at"])
                    break
            else:
                await asyncio.sleep(0.05)
    expected, results.status, results.closed_at, results.closed_by = await query(
        db, lambda tx: expected_results(tx, poll_id, r.settings)
    )
    if pushed is None:
        results.detail = " (no results message reached the fake)"
    else:
        results.matches = pushed["content"] == expected
        if not results.matches:
            results.detail = f"\n  sent:     {pushed['content']!r}\n  expected: {expected!r}"
    return tally, results


def db_upgrade(procs: Processes, workdir: Path, env: dict[str, str]) -> None:
    with open(procs.logs / "db-upgrade.log", "wb") as log:
        upgrade = subprocess.run([*frontdoor_cmd(), "db", "upgrade"], cwd=workdir, env=env, stdout=log, stderr=log)
    if upgrade.returncode:
        raise BenchError(f"frontdoor db upgrade failed:\n{procs.log_tail('db-upgrade')}")


def conduct(args: argparse.Namespace, procs: Processes, workdir: Path, pg: dict) -> bool:
    """The run, step by step. Waiting for a child happens outside any event loop, so Ctrl-C ends it at once."""
    settings = Settings()
    run_id = secrets.token_hex(3)
    args.prefix = openid_prefix(run_id)
    env = _child_env()
    front_env = dict(env)
    fd_port, echo_port = free_port(), free_port()
    front_env["FRONTDOOR_SERVER_PORT"] = str(fd_port)
    if args.db == "postgresql":
        name = f"frontdoor_bench_{run_id}"
        try:
            asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise BenchError(f"cannot create a database at {args.pg_admin_url}: {exc}") from None
        pg["name"] = name
        server = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
        database_url = f"postgresql+asyncpg://{server}/{name}"
        front_env["FRONTDOOR_DATABASE_URL"] = database_url
    else:  # the embedded default, relative to the server's cwd
        database_url = f"sqlite+aiosqlite:///{workdir / settings.database.url.split(':///', 1)[1]}"
    db_upgrade(procs, workdir, front_env)

    print(f"seeding {args.residents:,} residents ({args.db}, work dir {workdir}) ...", flush=True)
    seeded = asyncio.run(seed(database_url, run_id, args.residents, datetime.now(UTC)))
    print(f"starting frontdoor on :{fd_port} and the echo baseline on :{echo_port} ...", flush=True)
    front = procs.start("frontdoor", [*frontdoor_cmd(), "serve", "--port", str(fd_port)], cwd=workdir, env=front_env)
    echo = procs.start("echo", [sys.executable, "-m", "bench.echo_server", "--port", str(echo_port)], cwd=ROOT, env=env)
    wait_healthy(f"http://127.0.0.1:{fd_port}", front, procs, "frontdoor")
    wait_healthy(f"http://127.0.0.1:{echo_port}", echo, procs, "echo")
    r = Run(args, settings, run_id, database_url, f"http://127.0.0.1:{fd_port}{FAKE_PREFIX}", front, procs)

    poll_id, menu, dist = asyncio.run(distribute(r, seeded))
    print(f"voting: {args.residents:,} residents, {args.concurrency} requests in flight ...", flush=True)
    path = settings.webhook.path
    front_url = f"http://127.0.0.1:{fd_port}{path}"
    front_phase = run_voters(procs, "frontdoor", "frontdoor", args, front_url, "frontdoor", poll_id, menu)
    tally, results = asyncio.run(close_and_push(r, poll_id, front_phase))
    print(f"echo baseline: the same {front_phase.requests:,} messages ...", flush=True)
    echo_url = f"http://127.0.0.1:{echo_port}{path}"
    echo_phase = run_voters(procs, "echo", "echo", args, echo_url, "echo", poll_id, menu)
    if procs.stop("frontdoor") not in (0, None):
        print(f"warning: frontdoor did not stop cleanly:\n{procs.log_tail('frontdoor')}", file=sys.stderr)
    ok = report(args, seeded, dist, front_phase, echo_phase, tally, results, settings)
    log = procs.logs / "frontdoor.log"
    print(f"frontdoor log: {summarize_log(log)}" + (f" ({log})" if args.keep else ""))
    for line in _log_problems(log):
        print(f"  {line}")
    return ok


def _log_problems(path: Path, limit: int = 3) -> list[str]:
    """The first few distinct WARNING/ERROR lines of the server's log (without their timestamps)."""
    seen: list[str] = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL")):
                text = line.split(" ", 2)[-1][:240]
                if text not in seen:
                    seen.append(text)
                if len(seen) == limit:
                    break
    return seen


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="frontdoor-bench-polls-"))
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    pg: dict[str, str] = {}
    try:
        return 0 if conduct(args, procs, workdir, pg) else 1
    finally:
        clean_up(procs, args, workdir, pg.get("name"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.polls", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--residents", type=int, default=10_000, help="residents of the grid, one vote each (10,000)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight while voting (default 64)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the throwaway database for --db postgresql",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    p.add_argument("--keep", action="store_true", help="keep the work dir (database, logs)")
    # Internal: how the conductor starts the load generator.
    p.add_argument("--role", choices=["conductor", "voters"], default="conductor", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["frontdoor", "echo"], default="frontdoor", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--poll-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--menu", help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = parser().parse_args()
    if args.role == "voters":
        return role_voters(args)
    if args.residents < 1 or args.concurrency < 1:
        print("--residents ≥ 1, --concurrency ≥ 1", file=sys.stderr)
        return 2
    return run_cleanly(run, args)


if __name__ == "__main__":
    sys.exit(main())
