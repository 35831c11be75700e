"""CPU accounting from /proc: how much of a core each process (and the server's threads) used in a window."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_ticks(path: str) -> int:
    """utime + stime (clock ticks) from a /proc stat file, or -1 when the process is gone."""
    try:
        with open(path) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return int(fields[11]) + int(fields[12])


def process_ticks(pid: int) -> int:
    return _stat_ticks(f"/proc/{pid}/stat")


def thread_ticks(pid: int) -> dict[int, int]:
    """Per thread of a process: the main thread is the one whose id is the pid."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return {}
    return {tid: _stat_ticks(f"/proc/{pid}/task/{tid}/stat") for tid in tids}


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


@dataclass
class CpuSnapshot:
    processes: dict[str, int]
    server_threads: dict[int, int]
    machine: tuple[int, int]

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSnapshot:
        return cls(
            {name: process_ticks(pid) for name, pid in pids.items()}, thread_ticks(pids["server"]), machine_ticks()
        )


@dataclass
class CpuUsage:
    """% of one core per process over the window; the machine's busy share of all its cores."""

    processes: dict[str, float] = field(default_factory=dict)
    server_main_thread: float = math.nan
    server_other_threads: float = math.nan
    machine_busy: float = math.nan  # % of all cores

    @property
    def generators(self) -> float:
        return sum(v for k, v in self.processes.items() if "generator" in k)

    @property
    def others(self) -> float:
        """Machine CPU (in % of one core) not used by the processes the bench started: PostgreSQL, the rest."""
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - sum(self.processes.values()))


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot, seconds: float, server_pid: int) -> CpuUsage:
    def pct(start: int, end: int) -> float:
        return 100.0 * (end - start) / CLK_TCK / seconds

    usage = CpuUsage()
    for name, start in before.processes.items():
        end = after.processes.get(name, -1)
        if start >= 0 and end >= 0:
            usage.processes[name] = pct(start, end)
    threads = {
        tid: pct(before.server_threads.get(tid, 0), end) for tid, end in after.server_threads.items() if end >= 0
    }
    if threads:
        usage.server_main_thread = threads.pop(server_pid, math.nan)
        usage.server_other_threads = sum(threads.values())
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    usage.machine_busy = 100.0 * busy / total if total else math.nan
    return usage
