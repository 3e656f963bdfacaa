"""``fusionrec.kernels.compile_kernels`` compiles what ranking and training then call: in a fresh
interpreter, after it, a core that ranks wide rows and learns co-occurrences adds no compiled variant."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import random
    from fusionrec.contracts import BehaviorEvent
    from fusionrec.kernels import compile_kernels
    from fusionrec.learner import cooc_kernel, csr_add, csr_cut
    from fusionrec.pipeline import precision
    from fusionrec import topk
    from tests.fakes import DictStates, build_core, catalog

    KERNELS = [topk._top_k_rows, cooc_kernel.three_sums, cooc_kernel.add_sums, cooc_kernel.gather_sums, csr_add._merge, csr_cut._cut, precision._quantize_rows]

    def signatures():
        return [set(k.signatures) for k in KERNELS]

    compile_kernels()
    compiled = signatures()
    assert all(compiled), compiled
    rec = build_core(("shop",), items=catalog(("shop",), 1400), top_k=5)
    states, rng = DictStates(), random.Random(0)
    for b in range(12):
        events = [
            BehaviorEvent(f"e{b}-{n}", 1.7e9 + b * 64 + n, "shop", f"u{rng.randrange(20)}", f"s{rng.randrange(1400)}", "click", None, None)
            for n in range(64)
        ]
        rec.process(events, states)
    assert rec.learner.model.platforms["shop"].uses_cooc
    assert topk._top_k_rows.signatures and len(rec.store.platforms["shop"].ids) >= 16 * 85
    after = signatures()
    assert after == compiled, [sorted(map(str, a - c)) for a, c in zip(after, compiled)]
    print("ok")
    """
)


def test_compiled_kernels_are_the_variants_the_core_uses() -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]
