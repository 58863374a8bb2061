"""FlowHF: fine-tune causal language models with GFlowNet objectives.

The policy learns to sample completions in proportion to
``R(y|x) = exp(beta * r(x, y) + alpha * log p_ref(y|x))`` instead of maximising r.
"""

import os as _os

# OpenMP's default busy-wait makes torch's CPU threads crawl (up to ~80x here) whenever
# another process shares the cores, so threads wait passively. On an idle machine that
# costs decoding about 1.8x (the threads sleep between small matmuls); GOMP_SPINCOUNT=3000
# (GNU OpenMP, Linux wheels) wins that back but is as much slower when a neighbour keeps the
# cores busy (docs/speed.md). Only takes effect if set before torch is first imported;
# users may override either.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def openmp_waits() -> dict[str, str | None]:
    """How torch's CPU threads wait between ops in this process (benchmarks record it)."""
    return {name: _os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}


__version__ = "0.1.0"
