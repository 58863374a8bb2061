"""Evaluation of the FlowHF report (section 4.4): reward stats, top-K diversity / novelty,
bootstrap intervals, Welch t-tests, figures and the report's tables.

Entry points: ``evaluate_models`` (generate, score, measure, write every output),
``compare_evaluations`` (merge several output dirs) and the pure metric functions.
"""

from flowhf.evaluation.compare import compare_evaluations
from flowhf.evaluation.embeddings import Embedder
from flowhf.evaluation.generation import GenerationSettings
from flowhf.evaluation.metrics import (
    compute_metrics,
    distinct_n,
    mean_length,
    novelty,
    pairwise_cosine_distance_mean,
    per_token_kl,
    reward_stats,
    top_k_indices,
)
from flowhf.evaluation.runner import evaluate_models
from flowhf.evaluation.stats import bootstrap_ci, metric_cis, welch_one_sided

__all__ = [
    "Embedder",
    "GenerationSettings",
    "bootstrap_ci",
    "compare_evaluations",
    "compute_metrics",
    "distinct_n",
    "evaluate_models",
    "mean_length",
    "metric_cis",
    "novelty",
    "pairwise_cosine_distance_mean",
    "per_token_kl",
    "reward_stats",
    "top_k_indices",
    "welch_one_sided",
]
