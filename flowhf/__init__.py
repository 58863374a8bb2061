"""FlowHF: fine-tune causal language models with GFlowNet objectives.

The policy learns to sample completions in proportion to
``R(y|x) = exp(beta * r(x, y) + alpha * log p_ref(y|x))`` instead of maximising r.
"""

__version__ = "0.1.0"
