"""FlowHF: fine-tune causal language models with GFlowNet objectives.

The policy learns to sample completions in proportion to
``R(y|x) = exp(beta * r(x, y) + alpha * log p_ref(y|x))`` instead of maximising r.
"""

import os as _os

# OpenMP's default busy-wait makes torch's CPU threads crawl (up to ~20x here) whenever
# another process shares the cores; passive waiting costs nothing measurable when they
# don't. Only takes effect if set before torch is first imported; users may override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
