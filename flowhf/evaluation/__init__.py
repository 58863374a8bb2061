"""Evaluation of the FlowHF report (section 4.4): reward stats, top-K diversity / novelty,
bootstrap intervals, Welch t-tests, figures and the report's tables.

Entry points: ``evaluate_models`` (generate, score, measure, write every output),
``compare_evaluations`` (merge several output dirs) and the pure metric functions.

Names are imported on first use, so a light submodule (`flowhf.evaluation.tasks`, read by
`flowhf --help`) does not pay for torch and matplotlib.
"""

import importlib

_NAMES = {  # module -> the names it holds
    "compare": ("compare_evaluations",),
    "embeddings": ("Embedder",),
    "generation": ("GenerationSettings",),
    "metrics": (
        "compute_metrics", "distinct_n", "mean_length", "novelty",
        "pairwise_cosine_distance_mean", "per_token_kl", "reward_stats", "top_k_indices",
    ),
    "runner": ("evaluate_models",),
    "stats": ("bootstrap_ci", "metric_cis", "welch_one_sided"),
}  # fmt: skip
_WHERE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"flowhf.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'flowhf.evaluation' has no attribute {name!r}")
