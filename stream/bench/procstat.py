"""CPU time of processes and of the whole machine, read from ``/proc`` (Linux).

The worker, the broker, the publisher and the bench's own consumer share the same cores, so every
step reports how the machine's CPU was split between them.  A process's CPU time is ``utime + stime``
of all its threads, plus ``cutime + cstime`` (children it has waited for), summed over its process
tree: what the worker spends in helper threads or child processes is the worker's cost too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLK_TCK", "process_tree", "tree_cpu_seconds", "machine_busy_seconds", "CpuSample", "cpu_split"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat_fields(int(entry.name))
            if f is not None:
                kids.setdefault(int(f[1]), []).append(int(entry.name))  # f[1]: ppid
    return kids


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root``'s process tree (0 for a process that is gone)."""
    total = 0
    for pid in process_tree(root):
        f = _stat_fields(pid)
        if f is not None:  # utime, stime, cutime, cstime are fields 14-17 of stat, here 11-14
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the machine's cores spent not idle since boot (all cores together)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of named process groups and of the machine at one wall-clock moment."""

    wall_s: float
    groups: Mapping[str, float]
    machine_s: float
    loadavg_1m: float = field(default=0.0)

    @classmethod
    def take(cls, wall_s: float, groups: Mapping[str, Iterable[int]], own: tuple[str, float] | None = None) -> CpuSample:
        """Sample every group (its root pids); ``own`` names this process and its CPU seconds (read with
        ``time.process_time()``, which counts its threads too)."""
        values = {name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        if own is not None:
            values[own[0]] = own[1]
        return cls(wall_s, values, machine_busy_seconds(), os.getloadavg()[0])


def cpu_split(before: CpuSample, after: CpuSample, cores: int, extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """Share of the machine (all ``cores`` over the interval) each group used between two samples.

    ``extra`` adds groups measured elsewhere (CPU seconds in the interval, e.g. the publisher's own
    count).  ``other`` is what the machine spent outside the named groups (other jobs, the kernel).
    """
    wall = max(after.wall_s - before.wall_s, 1e-9)
    capacity = wall * cores
    out = {name: (after.groups[name] - before.groups.get(name, 0.0)) / capacity for name in after.groups}
    for name, seconds in (extra or {}).items():
        out[name] = seconds / capacity
    out["machine"] = (after.machine_s - before.machine_s) / capacity
    out["other"] = max(out["machine"] - sum(v for k, v in out.items() if k != "machine"), 0.0)
    return {k: round(v, 4) for k, v in out.items()}
