"""``fusionrec bench``: throughput, latency and memory figures, each against a reference in-process.

One module per benchmark (encoder, index, core, e2e, memory) and ``report`` for the machine line, the
JSON and the printed summary.  Benchmarks are commands, never timed tests.
"""

from __future__ import annotations

from stream.bench.report import run_bench

__all__ = ["run_bench"]
