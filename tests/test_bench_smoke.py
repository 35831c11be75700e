"""The benchmarks stay runnable: a tiny run of each must complete and pass its exactly-once check."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_webhook_bench_runs():
    out = run("bench.webhook", "--residents", "4", "--duration", "1", "--warmup", "1")
    assert "exactly-once" in out and "PASS" in out.split("exactly-once")[1]


def test_outbox_bench_runs():
    out = run("bench.outbox", "--notices", "100", "--residents", "20")
    checks = [line for line in out.splitlines() if line.startswith("exactly once")]
    assert len(checks) == 2 and all("PASS" in line and "0 duplicate(s), 0 missing" in line for line in checks)


def test_inbox_bench_runs():
    out = run("bench.inbox", "--cases", "2000", "--requests", "3")
    views = [line for line in out.splitlines() if "PASS" in line or "MISS" in line]
    assert len(views) == 10 and all("PASS" in line for line in views)  # every indexed view, small and fast here


def test_polls_bench_runs():
    out = run("bench.polls", "--residents", "200", "--concurrency", "16")
    checks = [line for line in out.splitlines() if line.rstrip().endswith(("PASS", "FAIL"))]
    assert len(checks) == 4 and all(line.rstrip().endswith("PASS") for line in checks), out[-3000:]
    assert "1. 接受: 67 (expected 67)" in out and "ballots 200" in out


def test_cluster_bench_runs():
    out = run("bench.cluster", "--residents", "4", "--duration", "1", "--warmup", "1")
    checks = [line for line in out.splitlines() if line.startswith("exactly-once")]
    assert len(checks) == 2 and all(line.rstrip().endswith("PASS") for line in checks), out[-3000:]
    assert "two / one" in out
