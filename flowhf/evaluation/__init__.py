"""Evaluation of the FlowHF report (section 4.4): reward stats, top-K diversity / novelty,
bootstrap intervals, Welch t-tests, figures and the report's tables.

Entry points: ``evaluate_models`` (generate, score, measure, write every output),
``compare_evaluations`` (merge several output dirs) and the pure metric functions.

Names are imported on first use, so a light submodule (`flowhf.evaluation.tasks`, read by
`flowhf --help`) does not pay for torch and matplotlib.
"""

import importlib

_WHERE = {
    "compare_evaluations": "compare",
    "Embedder": "embeddings",
    "GenerationSettings": "generation",
    "compute_metrics": "metrics",
    "distinct_n": "metrics",
    "mean_length": "metrics",
    "novelty": "metrics",
    "pairwise_cosine_distance_mean": "metrics",
    "per_token_kl": "metrics",
    "reward_stats": "metrics",
    "top_k_indices": "metrics",
    "evaluate_models": "runner",
    "bootstrap_ci": "stats",
    "metric_cis": "stats",
    "welch_one_sided": "stats",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"flowhf.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'flowhf.evaluation' has no attribute {name!r}")
