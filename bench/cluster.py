"""Webhook bench on PostgreSQL with one and with two `frontdoor serve` instances on the same database.

    .venv/bin/python -m bench.cluster [--residents 64] [--duration 15] [--generators 2]

Each phase gets a fresh PostgreSQL database, a shared fake WeChat API (`frontdoor fake-wechat`, so the instances
share one access token as in production) and its instances. The load generators (bench/loadgen.py) send the
complaint dialog in safe mode; with two instances every generator sends its requests to the instances in turn,
as nginx's round robin would, so one resident's messages land on both. Prints both phases, the ratio, the CPU
of every party and an exactly-once check of the cases. There is no target: on a 2-core machine the instances,
PostgreSQL and the generators share the same two cores, and the report says which of them was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.webhook import (
    BenchError,
    ExactlyOnce,
    Phase,
    Processes,
    _child_env,
    _fmt_ms,
    _pct,
    _pg_admin,
    case_numbers,
    check_exactly_once,
    clean_up,
    free_port,
    frontdoor_cmd,
    run_cleanly,
    run_phase,
    wait_healthy,
)
from bot.config import Settings


@dataclass
class Result:
    instances: int
    phase: Phase
    once: ExactlyOnce


def _account_env() -> dict[str, str]:
    """Credentials of a throwaway account: the instances talk to the fake with `fake_api` off, which refuses
    the repository's development values."""
    return {
        "FRONTDOOR_WECHAT_TOKEN": "benchToken" + secrets.token_hex(4),
        "FRONTDOOR_WECHAT_ENCODING_AES_KEY": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
        "FRONTDOOR_WECHAT_APP_ID": "wxbenchcluster001",
        "FRONTDOOR_WECHAT_APP_SECRET": "bench-" + secrets.token_hex(8),
    }


def run_instances(
    args: argparse.Namespace, instances: int, procs: Processes, workdir: Path, run_id: str, databases: list[str]
) -> Result:
    name = f"frontdoor_cluster_{run_id}_{instances}"
    try:
        asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise BenchError(f"cannot create a database at {args.pg_admin_url}: {exc}") from None
    databases.append(name)
    server = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    database_url = f"postgresql+asyncpg://{server}/{name}"
    account = _account_env()
    fake_port = free_port()
    env = {
        **_child_env(),
        **account,
        "FRONTDOOR_DATABASE_URL": database_url,
        "FRONTDOOR_WECHAT_FAKE_API": "false",
        "FRONTDOOR_WECHAT_API_BASE_URL": f"http://127.0.0.1:{fake_port}/fake-wechat",
    }
    upgrade = subprocess.run([*frontdoor_cmd(), "db", "upgrade"], cwd=workdir, env=env, capture_output=True)
    if upgrade.returncode:
        raise BenchError(f"frontdoor db upgrade failed:\n{upgrade.stderr.decode()[-2000:]}")
    fake_cmd = [*frontdoor_cmd(), "fake-wechat", "--port", str(fake_port)]
    _wait_fake(procs.start(f"fake-{instances}", fake_cmd, cwd=workdir, env=env), fake_port, procs, f"fake-{instances}")
    servers, urls = [], []
    for i in range(instances):
        port = free_port()
        label = f"frontdoor-{instances}-{i + 1}"
        proc = procs.start(label, [*frontdoor_cmd(), "serve", "--port", str(port)], cwd=workdir, env=env)
        wait_healthy(f"http://127.0.0.1:{port}", proc, procs, label)
        servers.append(label)
        urls.append(f"http://127.0.0.1:{port}{Settings().webhook.path}")
    print(f"{instances} instance(s): {args.warmup:g} s warm-up + {args.duration:g} s measured ...", flush=True)
    phase = run_phase(
        procs,
        f"cluster-{instances}",
        url=urls,
        mode="dialog",
        server=servers[0],
        args=args,
        run_id=f"{run_id}{instances}",
        env={**_child_env(), **account},  # the generators sign with the instances' token and key
        more_servers=tuple(servers[1:]),
    )
    for label in servers:
        procs.stop(label)
    procs.stop(f"fake-{instances}")
    once = check_exactly_once(case_numbers(database_url, workdir), phase)
    return Result(instances, phase, once)


def _wait_fake(proc: subprocess.Popen, port: int, procs: Processes, label: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{label} exited:\n{procs.log_tail(label)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fake-wechat/sent", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{label} did not start:\n{procs.log_tail(label)}")


def _servers_cpu(result: Result) -> float:
    cpu = result.phase.cpu.processes
    return cpu.get("server", 0.0) + sum(v for k, v in cpu.items() if k.startswith("frontdoor-"))


def report(args: argparse.Namespace, results: list[Result]) -> None:
    print()
    print(
        f"cluster bench — PostgreSQL, {args.residents} residents, {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up, {os.cpu_count()} CPUs, {args.generators} generator process(es)"
    )
    print()
    head = (
        f"{'':<14}{'msgs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'deferred':>10}"
        f"{'instances CPU':>15}{'generators':>12}{'others (PG)':>13}{'machine':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        p, c = r.phase, r.phase.cpu
        print(
            f"{f'{r.instances} instance(s)':<14}{p.rate:>9,.0f}{_fmt_ms(p.percentile(0.5)):>9}"
            f"{_fmt_ms(p.percentile(0.99)):>9}{sum(p.errors.values()):>8,}{p.deferred:>10,}"
            f"{_pct(_servers_cpu(r)):>15}{_pct(c.generators):>12}{_pct(c.others):>13}{_pct(c.machine_busy):>9}"
        )
    one, two = results
    ratio = two.phase.rate / one.phase.rate if one.phase.rate else math.nan
    print(f"{'two / one':<14}{ratio:>9.2f}   throughput ratio (no target; see below)")
    print("  CPU as % of one core (this machine: 100 % per core); others = the rest of the machine, mostly PostgreSQL")
    for r in results:
        for sample in r.phase.error_samples[:3]:
            print(f"  {r.instances} instance(s) error e.g. {sample}")
    print()
    print("where the time goes:")
    for r in results:
        print(f"  {r.instances} instance(s): {_bottleneck(r)}")
    print()
    for r in results:
        print(
            f"exactly-once, {r.instances} instance(s): {r.once.cases:,} cases stored, {r.once.replies:,} 提交 "
            f"replies with a case number   {r.once.verdict}"
        )


def _bottleneck(r: Result) -> str:
    c = r.phase.cpu
    cores = os.cpu_count() or 1
    if c.machine_busy >= 90:
        return (
            f"the machine is saturated ({c.machine_busy:.0f} % of {cores} cores): instances "
            f"{_servers_cpu(r):.0f} %, PostgreSQL and the rest {c.others:.0f} %, generators {c.generators:.0f} % "
            "— another instance can only take cores from the others"
        )
    if _servers_cpu(r) >= 90 * r.instances:
        return "every instance uses a full core: CPU-bound on its own work"
    return "no party uses all its CPU: the instances wait (PostgreSQL commits, per-resident locks)"


def run(args: argparse.Namespace) -> int:
    run_id = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="frontdoor-cluster-"))
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    databases: list[str] = []
    try:
        results = [run_instances(args, n, procs, workdir, run_id, databases) for n in (1, 2)]
        report(args, results)
        return 0 if all(r.once.verdict != "FAIL" for r in results) else 1
    finally:
        clean_up(procs, args, workdir, *databases)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--residents", type=int, default=64)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    return p


def main() -> int:
    return run_cleanly(run, parser().parse_args())


if __name__ == "__main__":
    sys.exit(main())
