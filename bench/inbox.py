"""Inbox bench: how long the console's inbox page takes with hundreds of thousands of cases.

    .venv/bin/python -m bench.inbox [--cases 300000] [--requests 200] [--db sqlite|postgresql] [--keep]

Fills a fresh database (SQLite in a temp dir, or a fresh PostgreSQL database dropped at the end) with N cases
spread over a year — a third waiting for acceptance, a third being handled by one of six units, a third
closed —, starts a real `frontdoor serve` on it, signs a dispatcher and a unit handler in, and requests each
view of the inbox in turn: the default (cases with a running clock by deadline), a page deep in it (by the
keyset cursor), all cases newest first, one unit's cases (the handler's own view), overdue only, one grid's and
one community's cases (200 grids, each case filed from one), a case number and text searches. The baseline is
the same server's /healthz in the same run: the page's figure over it is what the inbox costs beyond one HTTP
round trip. Target: p99 of every indexed view under 200 ms; a two-character word found nowhere (no trigram to
look up: every case is read) is reported without a target. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.webhook import (
    BenchError,
    Processes,
    _child_env,
    _pg_admin,
    clean_up,
    free_port,
    frontdoor_cmd,
    run_cleanly,
    wait_healthy,
)

TARGET_P99_MS = 200.0
UNITS = ("云城街道办事处", "社区居委会", "自然资源局", "住房和城乡建设局", "生态环境局", "信访局")
CATEGORIES = ("物业与停车", "邻里纠纷", "土地与征收", "房屋损坏", "环境与噪音", "其他")
PASSWORD = "bench-password-2026"
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
_NEXT = re.compile(r'rel="next" href="\?([^"]*)"')


# The geography tree: a district, 4 streets, 5 communities each, 10 grids each (ids given, parents first).
STREETS, COMMUNITIES, GRIDS = 4, 5, 10


def make_areas() -> list[tuple]:
    """(id, parent_id, level, name, code) of every node of the bench's tree."""
    nodes = [(1, None, "district", "云岩区", "D1")]
    for s in range(STREETS):
        street = len(nodes) + 1
        nodes.append((street, 1, "street", f"第{s + 1}街道", f"S{street}"))
        for c in range(COMMUNITIES):
            community = len(nodes) + 1
            nodes.append((community, street, "community", f"第{c + 1}社区", f"C{community}"))
            for g in range(GRIDS):
                grid = len(nodes) + 1
                nodes.append((grid, community, "grid", f"第{g + 1}网格", f"G{grid}"))
    return nodes


def grid_ids() -> list[int]:
    return [node[0] for node in make_areas() if node[2] == "grid"]


def make_cases(count: int, seed: int = 7) -> list[tuple]:
    """(number, openid, category, place, description, status, created, accept_due, accepted, handle_due,
    lead_unit, deadline_state, grid_id), a year of them, statuses and deadlines as the lifecycle leaves them,
    each filed from one of the tree's grids (spread evenly; not drawn from `rng`, so the rest stays as it was)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    grids = grid_ids()
    rows = []
    for i in range(count):
        created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
        category = CATEGORIES[i % len(CATEGORIES)]
        kind = rng.random()
        accept_due = created + timedelta(days=15)
        accepted = handle_due = unit = None
        if kind < 1 / 3:
            status = "pending"
        else:
            accepted = created + timedelta(hours=rng.randrange(1, 240))
            handle_due = accepted + timedelta(days=60)
            unit = UNITS[rng.randrange(len(UNITS))]
            status = rng.choice(("assigned", "in_progress")) if kind < 2 / 3 else "closed"
        due = accept_due if status == "pending" else handle_due
        state = "ok"
        if status != "closed" and due is not None:
            state = "overdue" if due < now else ("due_soon" if due - now < timedelta(days=3) else "ok")
        number = f"XF{created:%Y%m%d}-{i:06d}"
        story = f"第{i}号诉求：小区{rng.randrange(1, 300)}栋附近{category}问题，已持续{rng.randrange(1, 30)}天"
        rows.append(
            (
                number,
                f"oBench{i:08d}",
                category,
                f"云城街道某某小区{i % 500}栋",
                story,
                status,
                created,
                accept_due,
                accepted,
                handle_due,
                unit,
                state,
                grids[(i * 7919) % len(grids)],
            )
        )
    return rows


_INSERT = """
INSERT INTO cases (number, openid, category, place_label, description, photo_media_ids, voice_media_ids,
    video_media_ids, links, co_units, status, created_at, updated_at, accept_due_at, accepted_at, handle_due_at,
    lead_unit, deadline_state, grid_id)
VALUES ({marks})"""
_INSERT_AREA = "INSERT INTO areas (id, parent_id, level, name, code, created_at) VALUES ({marks})"


def fill_sqlite(path: Path, rows: list[tuple]) -> None:
    def ts(moment):
        return None if moment is None else moment.strftime(_SQLITE_TS)

    conn = sqlite3.connect(path)
    with conn:
        now = ts(datetime.now(UTC))
        conn.executemany(_INSERT_AREA.format(marks=", ".join("?" * 6)), [(*a, now) for a in make_areas()])
        conn.executemany(
            _INSERT.format(marks=", ".join("?" * 19)),
            [
                (n, o, c, p, d, "[]", "[]", "[]", "[]", "[]", s, ts(cr), ts(cr), ts(ad), ts(ac), ts(hd), u, st, g)
                for (n, o, c, p, d, s, cr, ad, ac, hd, u, st, g) in rows
            ],
        )
    conn.execute("ANALYZE")
    conn.close()


async def fill_postgresql(dsn: str, rows: list[tuple]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "areas",
            records=[(*a, now) for a in make_areas()],
            columns=["id", "parent_id", "level", "name", "code", "created_at"],
        )
        records = [
            (n, o, c, p, d, "[]", "[]", "[]", "[]", "[]", s, cr, cr, ad, ac, hd, u, st, g)
            for (n, o, c, p, d, s, cr, ad, ac, hd, u, st, g) in rows
        ]
        columns = [
            "number",
            "openid",
            "category",
            "place_label",
            "description",
            "photo_media_ids",
            "voice_media_ids",
            "video_media_ids",
            "links",
            "co_units",
            "status",
            "created_at",
            "updated_at",
            "accept_due_at",
            "accepted_at",
            "handle_due_at",
            "lead_unit",
            "deadline_state",
            "grid_id",
        ]
        await conn.copy_records_to_table("cases", records=records, columns=columns)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure(base: str, args: argparse.Namespace, rows: list[tuple]) -> dict[str, list[float]]:
    """Each view requested args.requests times, one at a time; milliseconds per request."""
    import aiohttp

    timings: dict[str, list[float]] = {}

    async def signed_in(name: str) -> aiohttp.ClientSession:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.get(f"{base}/console/login") as resp:
            csrf = _CSRF.search(await resp.text()).group(1)
        data = {"csrf": csrf, "name": name, "password": PASSWORD, "next": ""}
        async with http.post(f"{base}/console/login", data=data) as resp:
            if resp.status != 200 or "fd_session" not in {c.key for c in http.cookie_jar}:
                raise BenchError(f"could not sign {name} in (HTTP {resp.status})")
        return http

    dispatcher, handler = await signed_in("bench-dispatcher"), await signed_in("bench-unit")
    try:
        # A cursor deep in the default view: follow "next" 20 pages.
        path = "/console/cases"
        for _ in range(20):
            async with dispatcher.get(base + path) as resp:
                found = _NEXT.search(await resp.text())
            if not found:
                break
            path = "/console/cases?" + found.group(1).replace("&amp;", "&")
        word = rows[len(rows) // 2][4].split("：")[0]  # one case's own words: a search that finds one
        views = {
            "healthz (baseline)": (dispatcher, "/healthz"),
            "todo by deadline, page 1": (dispatcher, "/console/cases"),
            "todo by deadline, page 21": (dispatcher, path),
            "all, newest first": (dispatcher, "/console/cases?view=all"),
            "closed only": (dispatcher, "/console/cases?view=closed"),
            "overdue only": (dispatcher, "/console/cases?deadline=overdue"),
            "one unit (handler's view)": (handler, "/console/cases"),
            "one grid": (dispatcher, f"/console/cases?grid=G{grid_ids()[0]}"),
            "one community, all": (dispatcher, "/console/cases?view=all&grid=C3"),
            "case number": (dispatcher, f"/console/cases?view=all&q={rows[len(rows) // 3][0]}"),
            "text search, 3+ characters": (dispatcher, f"/console/cases?view=all&q={word}"),
            # Two Chinese characters found nowhere: no trigram to look up, every case read (the worst case).
            "text search, 2 chars, no match": (dispatcher, "/console/cases?view=all&q=无此"),
        }
        for label, (http, url) in views.items():
            samples = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                async with http.get(base + url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise BenchError(f"{label}: HTTP {resp.status}")
                samples.append((time.perf_counter() - t0) * 1000)
            timings[label] = samples
    finally:
        await dispatcher.close()
        await handler.close()
    return timings


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def report(args: argparse.Namespace, timings: dict[str, list[float]]) -> bool:
    base = statistics.median(timings["healthz (baseline)"])
    print(f"\ninbox bench — {args.cases:,} cases on {args.db}, {args.requests} requests per view, one at a time\n")
    print(f"{'view':34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50 / healthz':>14}  target")
    print("-" * 86)
    ok = True
    for label, samples in timings.items():
        p50, p99 = statistics.median(samples), _p(samples, 0.99)
        target = ""
        if label not in ("healthz (baseline)", "text search, 2 chars, no match"):
            passed = p99 < TARGET_P99_MS
            ok &= passed
            target = f"p99 < {TARGET_P99_MS:.0f} {'PASS' if passed else 'MISS'}"
        print(f"{label:34} {p50:8.1f} {p99:8.1f} {max(samples):8.1f} {p50 / base:13.1f}x  {target}")
    return ok


def run(args: argparse.Namespace) -> int:
    run_id = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="frontdoor-bench-inbox-"))
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    pg_name = None
    try:
        env = _child_env()
        port = free_port()
        env["FRONTDOOR_SERVER_PORT"] = str(port)
        if args.db == "postgresql":
            pg_name = f"frontdoor_bench_{run_id}"
            asyncio.run(_pg_admin(args.pg_admin_url, f'CREATE DATABASE "{pg_name}"'))
            server = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
            env["FRONTDOOR_DATABASE_URL"] = f"postgresql+asyncpg://{server}/{pg_name}"
        else:
            env["FRONTDOOR_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'inbox.db'}"
        import subprocess

        def frontdoor(*argv: str, stdin: str | None = None) -> None:
            done = subprocess.run(
                [*frontdoor_cmd(), *argv], cwd=workdir, env=env, input=stdin, capture_output=True, text=True
            )
            if done.returncode:
                raise BenchError(f"frontdoor {' '.join(argv)} failed:\n{done.stderr[-2000:]}")

        frontdoor("db", "upgrade")
        print(f"filling {args.cases:,} cases ({args.db}, work dir {workdir}) ...", flush=True)
        t0 = time.perf_counter()
        rows = make_cases(args.cases)
        if args.db == "postgresql":
            asyncio.run(fill_postgresql(f"postgresql://{server}/{pg_name}", rows))
        else:
            fill_sqlite(workdir / "inbox.db", rows)
        print(f"filled in {time.perf_counter() - t0:.1f} s", flush=True)
        frontdoor("operator", "add", "bench-dispatcher", "--role", "dispatcher", "--password-stdin", stdin=PASSWORD)
        frontdoor(
            "operator", "add", "bench-unit", "--role", "unit", "--unit", UNITS[0], "--password-stdin", stdin=PASSWORD
        )
        server_proc = procs.start("frontdoor", [*frontdoor_cmd(), "serve", "--port", str(port)], cwd=workdir, env=env)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server_proc, procs, "frontdoor")
        timings = asyncio.run(measure(base, args, rows))
        ok = report(args, timings)
        return 0 if ok else 1
    finally:
        clean_up(procs, args, workdir, pg_name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.inbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", type=int, default=300_000, help="cases in the database (default 300,000)")
    p.add_argument("--requests", type=int, default=200, help="requests per view (default 200)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--keep", action="store_true", help="keep the work dir (database, logs)")
    return p


def main() -> int:
    return run_cleanly(run, parser().parse_args())


if __name__ == "__main__":
    sys.exit(main())
