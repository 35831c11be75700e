"""Webhook load bench: frontdoor's complaint dialog against the least a WeChat safe-mode server must do.

    .venv/bin/python -m bench.webhook [--residents 64] [--duration 20] [--db sqlite|postgresql]

Starts, as separate processes, a real `frontdoor serve` on its embedded defaults (SQLite in a temp dir, or a
fresh PostgreSQL database) and the echo baseline (bench/echo_server.py); drives each with load generator
processes (bench/loadgen.py); prints throughput, latency, errors, CPU per process, the targets and an
exactly-once check of the cases. Everything it started is stopped and removed at the end, also on Ctrl-C.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import CpuSnapshot, CpuUsage, cpu_usage, process_ticks
from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 1500  # dialog messages/s, 64 residents, SQLite
TARGET_P99_MS = 50.0
TARGET_RESIDENTS = 64
# Requests signed before the clock starts: expected messages/s per mode (signing more costs memory and setup
# time; what runs out is signed on the fly and reported).
PRESIGN_RATE = {"dialog": 4000, "echo": 9000}
PRESIGN_MAX = 200_000  # per generator process, about 1.7 KB each (RSS)


# ---- processes -------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if the bench itself is killed outright (Linux), so nothing is left running."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Processes:
    """Every child the bench starts; `stop_all` ends exactly those (by pid), gently first."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: dict[str, subprocess.Popen] = {}
        self._log_files: dict[str, typing.BinaryIO] = {}

    def start(
        self, name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], pipes: bool = False, quiet: bool = False
    ) -> subprocess.Popen:
        log = self._log_files[name] = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else (subprocess.DEVNULL if quiet else log),
            stderr=log,
            text=pipes,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.running[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        proc = self.running.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log_files.pop(name).close()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, timeout=10.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base_url: str, proc: subprocess.Popen, procs: Processes, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} did not answer {base_url}/healthz within {timeout:.0f} s:\n{procs.log_tail(name)}")


class BenchError(Exception):
    pass


# ---- one measured phase ----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    duration: float
    ok: int = 0
    deferred: int = 0
    errors: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    submit_deferred: int = 0
    submit_failed: int = 0
    signed_inline: int = 0
    dialogs: int = 0
    cpu: CpuUsage = field(default_factory=CpuUsage)

    @property
    def rate(self) -> float:
        return self.ok / self.duration

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def add(self, result: dict) -> None:
        self.ok += result["ok"]
        self.deferred += result["deferred"]
        self.errors.update(result["errors"])
        self.error_samples.extend(result["error_samples"])
        self.latencies.extend(result["latencies_ms"])
        self.submitted.extend(result["submitted"])
        self.submit_deferred += result["submit_deferred"]
        self.submit_failed += result["submit_failed"]
        self.signed_inline += result["signed_inline"]
        self.dialogs += result["dialogs_in_window"]


def run_phase(
    procs: Processes,
    name: str,
    *,
    url: str | list[str],
    mode: str,
    server: str,
    args: argparse.Namespace,
    run_id: str,
    py_spy: str | None = None,
    env: dict[str, str] | None = None,
    more_servers: tuple[str, ...] = (),
) -> Phase:
    """Drive one server with the generator processes for warm-up + duration; returns what they measured."""
    gens = max(1, min(args.generators, args.residents))
    shares = [args.residents // gens + (i < args.residents % gens) for i in range(gens)]
    env = env or _child_env()
    generators: dict[str, subprocess.Popen] = {}
    first = 0
    for i, share in enumerate(shares):
        seconds = args.warmup + args.duration
        presign = min(PRESIGN_RATE[mode] * seconds / gens, PRESIGN_MAX) / share
        options = {
            "--mode": mode,
            "--residents": share,
            "--first": first,
            "--run-id": run_id,
            "--presign": int(presign),
            "--timeout": args.timeout,
        }
        urls = [f"--url={u}" for u in ([url] if isinstance(url, str) else url)]
        cmd = [sys.executable, "-m", "bench.loadgen", *urls, *(str(part) for pair in options.items() for part in pair)]
        gen_name = f"{name}-generator-{i + 1}"
        generators[gen_name] = procs.start(gen_name, cmd, cwd=ROOT, env=env, pipes=True)
        first += share
    for gen_name, proc in generators.items():
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise BenchError(f"{gen_name} did not start ({line!r}):\n{procs.log_tail(gen_name)}")
    t0 = time.time() + 0.2
    start, end = t0 + args.warmup, t0 + args.warmup + args.duration
    for proc in generators.values():
        proc.stdin.write(f"go {t0} {start} {end}\n")
        proc.stdin.flush()
    pids = {"server": procs.running[server].pid, "bench": os.getpid()}
    pids.update({name: procs.running[name].pid for name in more_servers})
    pids.update({gen_name: proc.pid for gen_name, proc in generators.items()})
    _sleep_until(start)
    before = CpuSnapshot.take(pids)
    if py_spy:
        spy = _start_py_spy(procs, py_spy, pids["server"], args.duration)
        pids["py-spy"] = spy.pid
        before.processes["py-spy"] = process_ticks(spy.pid)
    _sleep_until(end)
    after = CpuSnapshot.take(pids)
    phase = Phase(name, args.duration)
    phase.cpu = cpu_usage(before, after, args.duration, pids["server"])
    for gen_name, proc in generators.items():
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"{gen_name} ended without results:\n{procs.log_tail(gen_name)}")
        phase.add(json.loads(line))
        procs.stop(gen_name)
    if py_spy:
        try:  # it stops by itself after the window and then writes its file
            procs.running["py-spy"].wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("warning: py-spy did not finish", file=sys.stderr)
        procs.stop("py-spy")
    return phase


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _start_py_spy(procs: Processes, output: str, pid: int, duration: float) -> subprocess.Popen:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise BenchError("--py-spy needs py-spy (.venv/bin/pip install py-spy)")
    fmt = "flamegraph" if output.endswith(".svg") else "speedscope" if output.endswith(".json") else "raw"
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(duration)),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        fmt,
        "--output",
        str(Path(output).resolve()),
    ]
    return procs.start("py-spy", cmd, cwd=ROOT, env=dict(os.environ), quiet=True)


def _child_env() -> dict[str, str]:
    """The environment without any FRONTDOOR_* setting of the caller: the servers run on their defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDOOR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# ---- frontdoor, its database and the exactly-once check ---------------------------------------------------


def frontdoor_cmd() -> list[str]:
    script = Path(sys.executable).with_name("frontdoor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


async def _pg_admin(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_case_numbers(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
    try:
        return [row["number"] for row in await conn.fetch("SELECT number FROM cases")]
    finally:
        await conn.close()


def case_numbers(database_url: str, workdir: Path) -> list[str]:
    if database_url.startswith("postgresql"):
        return asyncio.run(_pg_case_numbers(database_url))
    path = workdir / database_url.split(":///", 1)[1]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT number FROM cases")]


@dataclass
class ExactlyOnce:
    cases: int
    distinct_cases: int
    replies: int
    duplicate_replies: int
    missing: int  # a 提交 reply named a case that is not stored
    extra: int  # stored cases no 提交 reply announced
    unanswered_submits: int  # 提交 deferred or failed (their case may exist without a reply)

    @property
    def verdict(self) -> str:
        if self.duplicate_replies or self.missing or self.distinct_cases != self.cases:
            return "FAIL"
        if self.extra == 0:
            return "PASS"
        return "PASS (explained)" if self.extra <= self.unanswered_submits else "FAIL"


def check_exactly_once(numbers: list[str], phase: Phase) -> ExactlyOnce:
    stored, replied = set(numbers), set(phase.submitted)
    return ExactlyOnce(
        cases=len(numbers),
        distinct_cases=len(stored),
        replies=len(phase.submitted),
        duplicate_replies=len(phase.submitted) - len(replied),
        missing=len(replied - stored),
        extra=len(stored - replied),
        unanswered_submits=phase.submit_deferred + phase.submit_failed,
    )


# ---- report ----------------------------------------------------------------------------------------------


def _fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def report(args: argparse.Namespace, frontdoor: Phase, echo: Phase, once: ExactlyOnce, server_log: str) -> None:
    db = "SQLite" if args.db == "sqlite" else "PostgreSQL"
    print()
    print(
        f"webhook bench — {args.residents} residents, {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up, frontdoor on {db}, {os.cpu_count()} CPUs, {args.generators} generator process(es)"
    )
    print()
    head = f"{'':<22}{'msgs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>9}{'deferred':>10}{'replies':>10}"
    print(head)
    print("-" * len(head))
    for label, p in (("frontdoor (dialog)", frontdoor), ("echo baseline", echo)):
        print(
            f"{label:<22}{p.rate:>10,.0f}{_fmt_ms(p.percentile(0.5)):>10}{_fmt_ms(p.percentile(0.99)):>10}"
            f"{sum(p.errors.values()):>9,}{p.deferred:>10,}{p.ok:>10,}"
        )
    ratio = frontdoor.rate / echo.rate if echo.rate else math.nan
    print(f"{'frontdoor / echo':<22}{ratio:>10.1%}   throughput ratio")
    print(
        f"{'':<22}frontdoor completed {frontdoor.dialogs:,} dialogs ({frontdoor.dialogs / args.duration:,.0f}/s) "
        f"in the window"
    )
    for p in (frontdoor, echo):
        if p.errors:
            kinds = ", ".join(f"{k} {v:,}" for k, v in p.errors.most_common())
            print(f"  {p.name} errors: {kinds}")
            for sample in p.error_samples[:3]:
                print(f"    e.g. {sample}")
    print()
    cores = os.cpu_count() or 1
    print(f"CPU in the measured window, % of one core (this machine has {cores} cores = {100 * cores} %):")
    spy = any("py-spy" in p.cpu.processes for p in (frontdoor, echo))
    print(
        f"{'':<19}{'server':>8}{'(loop':>7}{'other)':>8}{'generator':>11}{'bench':>7}"
        + (f"{'py-spy':>8}" if spy else "")
        + f"{'others':>8}{'machine busy':>14}"
    )
    for label, p in (("frontdoor phase", frontdoor), ("echo phase", echo)):
        c = p.cpu
        print(
            f"{label:<19}{_pct(c.processes.get('server')):>8}{_pct(c.server_main_thread):>7}"
            f"{_pct(c.server_other_threads):>8}{_pct(c.generators):>11}{_pct(c.processes.get('bench')):>7}"
            + (f"{_pct(c.processes.get('py-spy')):>8}" if spy else "")
            + f"{_pct(c.others):>8}{_pct(c.machine_busy):>14}"
        )
    print("  server = the whole server process: (loop) its event-loop thread, (other) its other threads")
    print("  (aiosqlite connection threads, executors); others = the rest of the machine (PostgreSQL, other")
    print("  jobs); machine busy = % of all cores.")
    for p in (frontdoor, echo):
        if len([k for k in p.cpu.processes if "generator" in k]) > 1:
            print(
                f"  {p.name} per generator: "
                + ", ".join(f"{v:.0f}%" for k, v in sorted(p.cpu.processes.items()) if "generator" in k)
            )
    for p in (frontdoor, echo):
        print(f"  → {p.name}: {_bottleneck(p.cpu, args.generators)}")
    for p in (frontdoor, echo):
        if p.signed_inline:
            print(f"  {p.name}: {p.signed_inline:,} requests were signed during the run (pre-signed pool ran out)")
    print()
    standard = args.residents == TARGET_RESIDENTS and args.db == "sqlite"
    note = "" if standard else f"   (targets are defined for {TARGET_RESIDENTS} residents on SQLite)"
    p99 = frontdoor.percentile(0.99)
    print(f"targets{note}:")
    clean = not frontdoor.errors and not frontdoor.deferred
    for label, value, ok in (
        (f"throughput ≥ {TARGET_RATE:,} dialog msgs/s", f"{frontdoor.rate:,.0f}", frontdoor.rate >= TARGET_RATE),
        (f"p99 < {TARGET_P99_MS:.0f} ms", _fmt_ms(p99), p99 < TARGET_P99_MS),
        ("no errors, nothing deferred", f"{sum(frontdoor.errors.values()) + frontdoor.deferred:,}", clean),
    ):
        print(f"  {label:<36}{value:>10}   {'PASS' if ok else 'MISS'}")
    print()
    print(
        f"exactly-once (whole run, after the server stopped): {once.cases:,} cases stored, "
        f"{once.replies:,} 提交 replies with a case number   {once.verdict}"
    )
    if once.verdict != "PASS":
        print(
            f"  distinct stored {once.distinct_cases:,}, duplicate numbers in replies {once.duplicate_replies:,}, "
            f"announced but not stored {once.missing:,}, stored but not announced {once.extra:,}, "
            f"提交 deferred or failed {once.unanswered_submits:,}"
        )
    print(f"frontdoor log: {server_log}")


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0f}%"


def _bottleneck(cpu: CpuUsage, generators: int) -> str:
    server = max(cpu.processes.get("server", 0.0), cpu.server_main_thread)
    if cpu.generators >= 90 * generators:
        return "the load generator is saturated: the figures are a lower bound for the server"
    if server >= 95:
        return "the server process uses a full core: it is CPU-bound on its own work"
    if cpu.machine_busy >= 90:
        return "all cores are busy: server, generator and others compete for CPU"
    if server >= 75:
        return (
            "the server process uses most of one core (its threads share one GIL): mostly CPU-bound on its "
            "own work, the rest is waiting (the database, hand-offs between its threads)"
        )
    return "neither the server nor the machine is CPU-bound: the server waits (locks, the database, threads)"


def summarize_log(path: Path) -> str:
    if not path.exists():
        return "none"
    counts = Counter()
    for line in path.read_text(errors="replace").splitlines():
        for level in ("WARNING", "ERROR", "CRITICAL"):
            if f" {level} " in line:
                counts[level] += 1
    return ", ".join(f"{v:,} {k}" for k, v in counts.items()) or "no warnings or errors"


# ---- main ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    run_id = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="frontdoor-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    pg_name = None
    try:
        env = _child_env()
        front_env = dict(env)
        fd_port, echo_port = free_port(), free_port()
        front_env["FRONTDOOR_SERVER_PORT"] = str(fd_port)
        database_url = settings.database.url
        if args.db == "postgresql":
            name = f"frontdoor_bench_{run_id}"
            try:
                asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{name}"'))
            except Exception as exc:
                raise BenchError(f"cannot create a database at {args.pg_admin_url}: {exc}") from None
            pg_name = name
            server = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
            database_url = f"postgresql+asyncpg://{server}/{pg_name}"
            front_env["FRONTDOOR_DATABASE_URL"] = database_url
            with open(logs / "db-upgrade.log", "wb") as log:
                upgrade = subprocess.run(
                    [*frontdoor_cmd(), "db", "upgrade"], cwd=workdir, env=front_env, stdout=log, stderr=log
                )
            if upgrade.returncode:
                raise BenchError(f"frontdoor db upgrade failed:\n{procs.log_tail('db-upgrade')}")
        print(
            f"starting frontdoor ({args.db}) on :{fd_port} and the echo baseline on :{echo_port} (work dir {workdir})",
            flush=True,
        )
        front = procs.start(
            "frontdoor", [*frontdoor_cmd(), "serve", "--port", str(fd_port)], cwd=workdir, env=front_env
        )
        echo = procs.start(
            "echo", [sys.executable, "-m", "bench.echo_server", "--port", str(echo_port)], cwd=ROOT, env=env
        )
        wait_healthy(f"http://127.0.0.1:{fd_port}", front, procs, "frontdoor")
        wait_healthy(f"http://127.0.0.1:{echo_port}", echo, procs, "echo")
        path = settings.webhook.path

        print(f"frontdoor: {args.warmup:g} s warm-up + {args.duration:g} s measured ...", flush=True)
        fd_phase = run_phase(
            procs,
            "frontdoor",
            url=f"http://127.0.0.1:{fd_port}{path}",
            mode="dialog",
            server="frontdoor",
            args=args,
            run_id=run_id,
            py_spy=args.py_spy,
        )
        if procs.stop("frontdoor") not in (0, None):
            print(f"warning: frontdoor did not stop cleanly:\n{procs.log_tail('frontdoor')}", file=sys.stderr)
        once = check_exactly_once(case_numbers(database_url, workdir), fd_phase)

        print(f"echo baseline: {args.warmup:g} s warm-up + {args.duration:g} s measured ...", flush=True)
        echo_phase = run_phase(
            procs,
            "echo",
            url=f"http://127.0.0.1:{echo_port}{path}",
            mode="echo",
            server="echo",
            args=args,
            run_id=run_id,
        )
        log_summary = summarize_log(logs / "frontdoor.log")
        if args.keep:
            log_summary += f" ({logs / 'frontdoor.log'})"
        report(args, fd_phase, echo_phase, once, log_summary)
        if args.py_spy:
            print(f"py-spy profile of the frontdoor server: {Path(args.py_spy).resolve()}")
        return 0 if once.verdict != "FAIL" else 1
    finally:
        clean_up(procs, args, workdir, pg_name)


def run_cleanly(run, args: argparse.Namespace) -> int:
    """Run a bench so that Ctrl-C and SIGTERM end it through the finally blocks that clean up (SIGINT too,
    since a shell may start a background job with SIGINT ignored); its exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped and removed", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


def clean_up(procs: Processes, args: argparse.Namespace, workdir: Path, *pg_names: str | None) -> None:
    """Stop what a bench started and remove its databases and files (unless --keep)."""
    procs.stop_all()
    for pg_name in filter(None, pg_names):
        try:
            asyncio.run(_pg_admin(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        except Exception as exc:
            print(f"warning: could not drop database {pg_name}: {exc}", file=sys.stderr)
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.webhook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--residents", type=int, default=64, help="concurrent simulated residents (default 64)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per server (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before (default 3)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the throwaway database for --db postgresql",
    )
    p.add_argument("--generators", type=int, default=1, help="load generator processes (default 1)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    p.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile the frontdoor server during the measured window with py-spy: .svg flame "
        "graph, .json speedscope, anything else collapsed stacks (text)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir (database, logs)")
    return p


def main() -> int:
    args = parser().parse_args()
    if args.residents < 1 or args.duration <= 0 or args.warmup < 0:
        print("--residents ≥ 1, --duration > 0, --warmup ≥ 0", file=sys.stderr)
        return 2
    return run_cleanly(run, args)


if __name__ == "__main__":
    sys.exit(main())
