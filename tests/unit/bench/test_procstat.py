"""CPU accounting from /proc: shares of the machine per process group."""

from __future__ import annotations

import os
import sys

import pytest

from stream.bench.procstat import CpuSample, cpu_split, machine_busy_seconds, process_tree, tree_cpu_seconds

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_cpu_split_shares_of_the_machine() -> None:
    before = CpuSample(100.0, {"worker0": 10.0, "broker": 5.0}, 1000.0)
    after = CpuSample(110.0, {"worker0": 18.0, "broker": 7.0}, 1016.0)  # 10 s on 2 cores = 20 core-seconds
    share = cpu_split(before, after, cores=2, extra={"publisher": 1.0})
    assert share == {"worker0": 0.4, "broker": 0.1, "publisher": 0.05, "machine": 0.8, "other": 0.25}


def test_other_never_negative() -> None:
    share = cpu_split(CpuSample(0.0, {"w": 0.0}, 0.0), CpuSample(1.0, {"w": 1.0}, 0.9), cores=1)
    assert share["other"] == 0.0


@linux
def test_proc_readings() -> None:
    assert os.getpid() in process_tree(os.getpid())
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert tree_cpu_seconds(os.getpid()) > 0
    assert tree_cpu_seconds(2**22 + 12345) == 0  # a process that does not exist
    assert machine_busy_seconds() > 0
